import pytest

from googlenet.cli import run
from googlenet.config import compose_config
from googlenet.trainer import train
from helpers import run_script


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1 must be > 0"),
    ("optim.lrr=0.1", "optim.lrr is not a config key"),
    ("+optim.lrr=0.1", "adding new keys is not supported"),
    ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),
    ("data.eval_resize=20", "data.eval_resize=20 is smaller than data.crop_size"),
    ("model=resnet", "model"),
    ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
    ("trainer.device=tpu", "trainer.device='tpu'"),
    ("resume=/no/such/file.pt", "resume=/no/such/file.pt is not a file"),
])
def test_bad_configs_fail_with_one_line_errors(capsys, override, message):
    assert run("train", train, ["data.crop_size=32", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_bad_config_from_the_shell(tmp_path):
    result = run_script("train.py", "optim.momentum=2", timeout=60)
    assert result.returncode == 2 and result.stderr == "error: optim.momentum=2 must be <= 1\n"


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
