"""Before Hydra starts: compose and validate what it is about to run, and probe the run (or sweep) directory,
so that a typo'd key, a bad value or an unwritable folder is one line and leaves no directory behind.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from common.errors import UserError
from common.files import probe_writable_dir

from ..distributed import launched_by_a_scheduler
from ..training.rundir import check_not_a_system_folder, check_run_dir_free
from .config import (
    VALIDATORS,
    check_added_keys,
    check_renamed_keys,
    compose_raw,
    first_line,
    resolved_run_dir,
    task_config,
)

MAX_CHECKED_SWEEP_JOBS = 256
# Hydra's record of a run (in `hydra.output_subdir`), and the run's log: a failed start removes these, if it made them.
HYDRA_RECORDS = ("config.yaml", "hydra.yaml", "overrides.yaml")
LOG_FILE = "train.log"


def run_records(records_subdir: str | None) -> list[str]:
    return [*(f"{records_subdir}/{name}" for name in HYDRA_RECORDS if records_subdir), LOG_FILE]


@dataclass
class Precheck:
    """What the checks found out, for the task that runs afterwards."""

    validated: bool = False        # every job's config was validated here (the task need not do it again)
    existing_ancestor: Path | None = None  # the deepest folder of the run dir that existed before this command
    existing_records: frozenset[str] = frozenset()  # run_records() that were there before this command
    records_subdir: str | None = ".hydra"  # `hydra.output_subdir` as the user set it
    sweep_dir: Path | None = None  # a multirun's directory, resolved once
    slurm_setup: list[str] | None = None  # under submitit's SLURM launcher: its `setup` lines (else None)


def parse_overrides(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    parser = OverridesParser.create()
    parsed = []
    for item in overrides:
        try:
            parsed += parser.parse_overrides([item])
        except HydraException:
            raise UserError(f"cannot parse the override {item!r}; write key=value and quote values with special "
                            "characters (see https://hydra.cc/docs/advanced/override_grammar/basic/)") from None
    return parsed


def check_command_line(config_name: str, overrides: list[str], multirun: bool) -> Precheck:
    """Compose and validate what Hydra is about to run (every job of a basic sweep): UserError if anything is off."""
    check_renamed_keys(config_name, overrides)
    parsed = parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    base = [o.input_line for o in parsed if not o.is_sweep_override()]
    check_added_keys(config_name, base)
    full = compose_raw(config_name, base)
    mode = OmegaConf.select(full, "hydra.mode", default=None)  # a RunMode, or None
    multirun = multirun or getattr(mode, "name", mode) == "MULTIRUN"
    records_subdir = OmegaConf.select(full, "hydra.output_subdir", default=None)
    if sweeps and not multirun:
        item = sweeps[0].input_line
        raise UserError(f"{item} lists several values: that is a sweep; add -m (python {config_name}.py -m {item})")
    if not multirun:
        run_dir = resolved_run_dir(full)
        task = task_config(full, run_dir)
        VALIDATORS[config_name](task)
        ancestor = check_output_dir(run_dir, "hydra.run.dir")
        if config_name == "train":  # before Hydra writes its record into a run dir that is not ours to touch
            check_run_dir_free(Path(run_dir).expanduser().absolute(), task.resume, task.trainer.overwrite,
                               launched_by_a_scheduler())
        records = run_records(records_subdir)
        existing = frozenset(name for name in records if (Path(run_dir).expanduser() / name).exists())
        return Precheck(True, ancestor, existing, records_subdir)
    sweep_dir = resolved_run_dir(full, "hydra.sweep.dir")
    jobs = basic_sweep_jobs(full, sweeps)
    for job in (jobs or [[]])[:MAX_CHECKED_SWEEP_JOBS]:
        VALIDATORS[config_name](task_config(compose_raw(config_name, base + job), sweep_dir))
    validated = jobs is not None and len(jobs) <= MAX_CHECKED_SWEEP_JOBS
    if config_name == "train":
        check_not_a_system_folder(Path(sweep_dir), "hydra.sweep.dir")
    ancestor = check_output_dir(sweep_dir, "hydra.sweep.dir")
    on_slurm = str(OmegaConf.select(full, "hydra.launcher._target_", default="")).endswith("SlurmLauncher")
    return Precheck(validated, ancestor, records_subdir=records_subdir,
                    sweep_dir=Path(sweep_dir).expanduser().absolute(),
                    slurm_setup=list(OmegaConf.select(full, "hydra.launcher.setup", default=None) or [])
                    if on_slurm else None)


def basic_sweep_jobs(full: DictConfig, sweeps) -> list[list[str]] | None:
    """Each job's sweep overrides under Hydra's basic sweeper (the cartesian product of the swept values, as
    that sweeper forms it); None for other sweepers, which choose values as they run (each job then checks
    its own values)."""
    target = str(OmegaConf.select(full, "hydra.sweeper._target_", default=""))
    if not target.endswith("BasicSweeper"):
        return None
    params = OmegaConf.select(full, "hydra.sweeper.params", default=None) or {}
    items = [f"{k}={v}" for k, v in params.items()] + [o.input_line for o in sweeps]
    try:
        choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
                   else [o.input_line] for o in parse_overrides(items)]
    except Exception as e:  # noqa: BLE001 - Hydra raises its own exception types here
        raise UserError(first_line(e)) from None
    return [list(job) for job in itertools.product(*choices)]


def check_output_dir(path: str, key: str) -> Path:
    """The run (or sweep) directory can be created and written: a file there, or a read-only parent, is an
    error now rather than after the data and the model were loaded. Returns the deepest existing folder."""
    if Path(path).expanduser().is_file():
        raise UserError(f"{key}={path} is a file, not a directory; choose another {key}")
    return probe_writable_dir(path, key, path)
