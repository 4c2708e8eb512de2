"""The command line's own parts: Hydra's flag parser (our one private use of Hydra), sweep expansion, renamed keys."""
import pytest
from helpers import installed
from omegaconf import OmegaConf

from common.errors import UserError
from googlenet.cli.config import RENAMED, compose_config, compose_raw
from googlenet.cli.hydra_private import hydra_flags
from googlenet.cli.precheck import basic_sweep_jobs, check_command_line, parse_overrides


def test_hydras_flag_parser_still_reads_what_we_rely_on():
    try:
        args = hydra_flags(["-m", "--cfg", "job", "seed=0,1", "data=sample"])
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"hydra._internal.utils.get_args_parser changed in this Hydra release ({e!r}); "
                    "update googlenet/cli/hydra_private.py")
    assert args.multirun and args.cfg == "job" and args.overrides == ["seed=0,1", "data=sample"]
    for flag in ("help", "hydra_help", "info", "shell_completion"):
        assert hasattr(args, flag), f"Hydra's parser no longer has --{flag.replace('_', '-')}; update hydra_private.py"


def test_a_basic_sweep_expands_to_the_cartesian_product_in_hydras_order():
    full = compose_raw("train", ["data=sample"])
    sweeps = parse_overrides(["seed=0,1", "optim=sgd,rmsprop"])
    assert basic_sweep_jobs(full, sweeps) == [["seed=0", "optim=sgd"], ["seed=0", "optim=rmsprop"],
                                              ["seed=1", "optim=sgd"], ["seed=1", "optim=rmsprop"]]
    assert check_command_line("train", ["seed=0,1", "data=sample"], multirun=True).validated


def test_sweeps_a_plugin_runs_are_left_to_each_job_to_validate():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    check = check_command_line("train", ["hparams_search=sample_optuna"], multirun=True)
    assert not check.validated  # the sweeper chooses its values while it runs: each job checks its own


@pytest.mark.parametrize("command, old, new", [
    ("train", "model.weights=x.pt", "use finetune.weights"),
    ("train", "model.freeze=features", "use finetune.freeze"),
    ("train", "trainer.device=cpu", "use runtime.device"),
    ("train", "trainer.precision=32", "use runtime.precision"),
    ("evaluate", "ema=true", "use weights (auto | raw | ema)"),
    ("evaluate", "trainer.limit_val_batches=1", "use limit_batches"),
    ("evaluate", "trainer.device=cpu", "use runtime.device"),
    ("predict", "ema=false", "use weights"),
    ("export", "trainer.precision=32", "use runtime.precision"),
])
def test_old_spellings_name_the_new_key(command, old, new):
    with pytest.raises(UserError) as e:
        compose_config(command, [old])
    assert f"{old.split('=')[0]} was renamed: {new}" in str(e.value)
    with pytest.raises(UserError, match="was renamed"):
        check_command_line(command, [old], multirun=False)


def test_shared_keys_mean_the_same_in_every_command():
    train = compose_config("train", ["data=sample"])
    for command in ("evaluate", "predict", "export"):
        cfg = compose_raw(command, [])
        assert OmegaConf.to_container(cfg.runtime) == OmegaConf.to_container(train.runtime), command
        assert "trainer" not in cfg and cfg.weights == "auto", command
    assert "weights" not in train.model and "freeze" not in train.model
    assert set(RENAMED) == {"train", "evaluate", "predict", "export"}


@pytest.mark.parametrize("sweep", ["123456e78901", "012345678901", "a'b\\c"])
def test_a_sweep_id_reaches_the_jobs_as_the_same_string(sweep, tmp_path):
    # the id travels as a Hydra override: unquoted, 123e456789 would arrive as inf and 0123 as 123
    from googlenet.cli.sweep import SWEEP_ENV, sweep_overrides
    cfg = compose_raw("train", ["data=sample", *sweep_overrides(tmp_path / "it's", sweep)])
    assert cfg.hydra.job.env_set[SWEEP_ENV] == sweep and cfg.hydra.sweep.dir == str(tmp_path / "it's")


@pytest.mark.skipif(not installed("hydra_plugins.hydra_submitit_launcher"),
                    reason="needs submitit (pip install -r requirements-hydra.txt)")
def test_submitits_slurm_jobs_end_every_task_when_one_fails():
    from googlenet.cli.sweep import slurm_setup_override
    assert check_command_line("train", ["data=sample"], multirun=True).slurm_setup is None  # not on SLURM
    precheck = check_command_line("train", ["hydra/launcher=submitit_slurm", "hydra.launcher.setup=['module load x']",
                                            "data=sample"], multirun=True)
    assert precheck.slurm_setup == ["module load x"]
    override = slurm_setup_override(precheck.slurm_setup)
    assert compose_raw("train", ["hydra/launcher=submitit_slurm", override]).hydra.launcher.setup == [
        "module load x", "export SLURM_KILL_BAD_EXIT=1"]
    assert slurm_setup_override(["export SLURM_KILL_BAD_EXIT=0"]) is None  # the user decided
    assert slurm_setup_override(None) is None  # not under submitit's SLURM launcher
