import pytest
from helpers import run_script

from common.errors import UserError
from googlenet.cli.config import compose_config
from googlenet.cli.precheck import check_command_line


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1 must be > 0"),
    ("optim.lrr=0.1", "optim.lrr is not a config key"),
    ("+optim.lrr=0.1", "adding new keys is not supported"),
    ("++optim.lrr=0.1", "optim.lrr is not a config key; ++ sets existing keys only"),
    ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),
    ("data.eval_resize=20", "data.eval_resize=20 is smaller than data.crop_size"),
    ("model=resnet", "unknown model 'resnet'; choose one of: inception_v1"),
    ("model.batch_norm=maybe", "model.batch_norm='maybe' must be true or false"),
    ("runtime.precision=fp8", "runtime.precision='fp8' is not one of"),
    ("runtime.device=tpu", "runtime.device='tpu'"),
    ("resume=/no/such/file.pt", "resume=/no/such/file.pt is not a file"),
    ("optim.lr=[", "cannot parse the override 'optim.lr=['"),
    ("optim.momentum=2", "optim.momentum=2 must be <= 1"),
    ("data.root=/no/such/folder", "dataset root /no/such/folder does not exist"),
    ("seed=0,1", "seed=0,1 lists several values: that is a sweep; add -m"),
    ("hydra/launcher=nowhere", "hydra/launcher=nowhere is not installed; pip install -r requirements-hydra.txt"),
])
def test_bad_command_lines_are_one_line_errors(override, message):
    with pytest.raises(UserError) as e:
        check_command_line("train", ["data.crop_size=32", override], multirun=False)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_every_job_of_a_sweep_is_checked_before_any_runs():
    with pytest.raises(UserError, match="optim.lr=-2 must be > 0"):
        check_command_line("train", ["optim.lr=0.1,-2", "data=sample"], multirun=True)
    check_command_line("train", ["optim.lr=0.1,0.2", "data=sample"], multirun=True)


def test_run_dir_that_cannot_be_made_is_an_error_before_anything_runs(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for run_dir, message in [(tmp_path / "a_file", "is a file, not a directory"),
                             (tmp_path / "a_file" / "run", "lies under the file")]:
        with pytest.raises(UserError, match=message):
            check_command_line("train", ["data=sample", f"hydra.run.dir={run_dir}"], multirun=False)
    check_command_line("train", ["data=sample", f"hydra.run.dir={tmp_path / 'new' / 'run'}"], multirun=False)
    assert not (tmp_path / "new").exists()  # the probe leaves nothing behind


def test_the_run_dir_probe_makes_no_folder_that_another_rank_could_see_vanish(tmp_path, monkeypatch):
    # the ranks of a torchrun job probe the same run dir while rank 0 creates it: a probe that made and removed
    # folders pulled them from under the other rank's mkdir (FileNotFoundError under load)
    import os

    from common.files import probe_writable_dir

    def no_mkdir(*args, **kwargs):
        raise AssertionError("the probe created a folder")
    monkeypatch.setattr(os, "mkdir", no_mkdir)
    assert probe_writable_dir(tmp_path / "runs" / "v1" / "now", "hydra.run.dir", "x") == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == []


def test_bad_input_from_the_shell_exits_2_with_one_line_and_no_run_dir(tmp_path):
    # the other cases of check_command_line are covered in-process above (and a missing data.root under the
    # launcher in test_distributed.py); these go through the shell and Hydra, one run and one sweep
    for args, message in [(["data=imagenet2"], "error: unknown data 'imagenet2'"),
                          (["-m", "seed=0,1", "optim.lr=-1", "data=sample"], "error: optim.lr=-1 must be > 0")]:
        result = run_script("train.py", *args, timeout=120, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), (args, result.stderr)
        assert not (tmp_path / "runs").exists(), args  # no run directory left behind


def test_experiment_presets_compose_to_the_papers_recipes():
    g = compose_config("train", ["experiment=googlenet_paper"])
    assert g.model.name == "inception_v1_paper" and g.optim.name == "sgd" and g.optim.momentum == 0.9
    assert (g.schedule.name, g.schedule.interval, g.schedule.step_epochs, g.schedule.gamma) == ("step", "epoch", 8, 0.96)
    assert g.ema.enabled and g.data.augment.random_interpolation and g.data.augment.scale == [0.08, 1.0]
    v3 = compose_config("train", ["experiment=inception_v3_paper"])
    assert v3.model.name == "inception_v3" and v3.model.aux_batch_norm and v3.data.crop_size == 299
    assert (v3.optim.name, v3.optim.alpha, v3.optim.eps, v3.optim.tf_style) == ("rmsprop", 0.9, 1.0, True)
    assert (v3.optim.lr, v3.optim.clip_grad_norm, v3.loss.label_smoothing) == (0.045, 2.0, 0.1)
    assert (v3.schedule.step_epochs, v3.schedule.gamma) == (2, 0.94)
    # the shell wins over a preset
    mixed = compose_config("train", ["experiment=googlenet_paper", "model=inception_v1", "optim.lr=0.02"])
    assert mixed.model.name == "inception_v1" and mixed.optim.lr == 0.02


def test_the_default_loader_is_dali_on_a_gpu_when_dali_is_installed(monkeypatch):
    import importlib.util

    from data.loaders import resolve_loader
    assert compose_config("train", ["model=inception_v1"]).data.loader == "auto"
    installed = {"nvidia.dali": True}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed.get(name) else None)
    assert [resolve_loader("auto", d) for d in ("cuda", "cuda:1", "cpu")] == ["dali", "dali", "pil"]
    assert resolve_loader("pil", "cuda") == "pil" and resolve_loader("dali", "cpu") == "dali"
    installed["nvidia.dali"] = False  # without DALI a GPU run decodes with PIL
    assert resolve_loader("auto", "cuda") == "pil"
