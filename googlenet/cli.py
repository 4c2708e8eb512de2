"""The Hydra entry points' plumbing: check the command line before Hydra creates anything, run the task
inside Hydra, and turn user errors into one line on stderr and an exit status.

    train.py:   @hydra.main(config_path="configs", config_name="train") def main(cfg): return train_task(cfg)
                if __name__ == "__main__": cli.main(main, "train")

Everything Hydra offers works as Hydra documents it (`-m`, `--cfg`, `--info`, `--help`, `-sc`, launchers,
sweepers, `hydra.job.chdir`, `${hydra:...}`); what this module adds:
- a typo'd key, a bad value, an unknown option, bad override syntax or `++key` for a missing key is one line
  (`error: ...`), exit status 2, and no run directory (the checks run before Hydra makes one; in a sweep
  every job's values are checked first);
- ranks other than 0 of a DDP job write no `.hydra/` and no log file;
- each training job writes `result.json` into its run dir, and a sweep ends with a line per job.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from data.files import write_atomic

from .config import VALIDATORS, check_added_keys, compose_raw, first_line, resolved_run_dir, task_config
from .distributed import detect_env
from .errors import UserError
from .hydra_callbacks import RESULT_FILE
from .state import RunResult

REPO_ROOT = Path(__file__).resolve().parents[1]
EXIT_USER_ERROR = 2
MAX_CHECKED_SWEEP_JOBS = 256
# Keys that hold paths a user types relative to where they run the command (Hydra may chdir later).
PATH_KEYS = ("data.root", "resume", "ckpt", "output", "model.weights", "images")


# ------------------------------------------------------------------------------ before Hydra starts

def main(app: Callable[[], None], config_name: str) -> None:
    """Run a `@hydra.main` app after checking its command line; exits with the task's status."""
    from hydra._internal.utils import get_args_parser  # Hydra's own flags, parsed as Hydra will
    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    _export_repo_root()
    try:
        if _runs_the_task(args):
            check_command_line(config_name, args.overrides, args.multirun)
        env = detect_env()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        _exit(EXIT_USER_ERROR)
    if env.enabled and not env.is_main:  # rank 0 writes the run record and the log
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    try:
        app()
    except SystemExit as e:  # a single run's failure (run_task) or Hydra's own exit
        _exit(e.code if isinstance(e.code, int) else 1)
    _exit(OUTCOMES.exit_code)


def _exit(code: int) -> None:
    from .launch import report_status
    report_status(code)
    sys.exit(code)


def _runs_the_task(args) -> bool:
    return not (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion)


def _export_repo_root() -> None:
    """Child processes (submitit jobs, loader workers started by spawn) import this package too."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, paths)])


def _parse_overrides(overrides: list[str]):
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


def check_command_line(config_name: str, overrides: list[str], multirun: bool) -> None:
    """Compose and validate what Hydra is about to run (every job of a sweep): UserError if anything is off."""
    parsed = _parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    base = [o.input_line for o in parsed if not o.is_sweep_override()]
    check_added_keys(config_name, base)
    full = compose_raw(config_name, base)
    multirun = multirun or str(OmegaConf.select(full, "hydra.mode", default="")) == "MULTIRUN"
    if sweeps and not multirun:
        item = sweeps[0].input_line
        raise UserError(f"{item} lists several values: that is a sweep; add -m (python {config_name}.py -m {item})")
    if not multirun:
        VALIDATORS[config_name](task_config(full, resolved_run_dir(full)))
        check_output_dir(resolved_run_dir(full), "hydra.run.dir")
        return
    sweep_dir = resolved_run_dir(full, "hydra.sweep.dir")
    for job in _basic_sweep_jobs(full, sweeps)[:MAX_CHECKED_SWEEP_JOBS]:
        cfg = compose_raw(config_name, base + job)
        VALIDATORS[config_name](task_config(cfg, sweep_dir))
    check_output_dir(sweep_dir, "hydra.sweep.dir")


def _basic_sweep_jobs(full: DictConfig, sweeps) -> list[list[str]]:
    """The jobs' sweep overrides under Hydra's basic sweeper; other sweepers choose values as they run (each
    job then checks its own values), so only the fixed part is checked here."""
    target = str(OmegaConf.select(full, "hydra.sweeper._target_", default=""))
    if not target.endswith("BasicSweeper"):
        return [[]]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    params = OmegaConf.select(full, "hydra.sweeper.params", default=None) or {}
    items = [f"{k}={v}" for k, v in params.items()] + [o.input_line for o in sweeps]
    if not items:
        return [[]]
    try:
        return BasicSweeper.split_arguments(_parse_overrides(items), None)[0]
    except Exception as e:  # noqa: BLE001 - Hydra raises its own exception types here
        raise UserError(first_line(e)) from None


# The deepest folder of the run dir that existed before this command: a failed start removes no more.
EXISTING_ANCESTOR: list[Path] = []


def check_output_dir(path: str, key: str) -> None:
    """The run (or sweep) directory can be created and written: a file there, or a read-only parent, is an
    error now rather than after the data and the model were loaded. Probed by creating it (and removing
    what the probe created), since permission bits do not tell for root or odd file systems."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UserError(f"{key}={path} is a file, not a directory; choose another {key}")
    ancestor = target
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{key}={path} lies under the file {ancestor}; choose another {key}")
    EXISTING_ANCESTOR[:] = [ancestor]
    created = [p for p in [target, *target.parents] if not p.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"{key}={path} cannot be written ({e.strerror or e}); choose another {key}") from None
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


# ---------------------------------------------------------------------------------- inside Hydra

@dataclass
class Job:
    """The Hydra job the task function runs as."""

    run_dir: Path
    multirun: bool
    num: int
    overrides: list[str]
    script: str
    original_cwd: Path

    @classmethod
    def current(cls, script: str) -> "Job":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        hc = HydraConfig.get()
        return cls(Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN, int(hc.job.get("num") or 0),
                   list(hc.overrides.task), script, Path(hc.runtime.cwd))

    def resume_command(self) -> str:
        """The command that continues this run: its own overrides, resume=auto and its run dir."""
        keep = [o for o in self.overrides if not o.lstrip("+").startswith(("resume=", "hydra.run.dir="))]
        args = shlex.join([*keep, "resume=auto", f"hydra.run.dir={self.run_dir}"])
        env = detect_env()
        launcher = f"torchrun --nproc_per_node={env.local_world_size}" if env.launcher == "torchrun" else "python"
        return f"{launcher} {self.script} {args}"


@dataclass
class Outcomes:
    """The exit status of this process: the worst of its jobs' (a sweep's failed jobs make it 1)."""

    codes: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.codes if c]
        if not failed:
            return 0
        return failed[0] if len(self.codes) == 1 else 1


OUTCOMES = Outcomes()


def absolute_paths(cfg: DictConfig, cwd: Path) -> None:
    """Paths typed relative to where the command ran stay right when Hydra changes directory."""
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, str) and value not in ("auto", "") and not os.path.isabs(os.path.expanduser(value)) \
                and "*" not in value and "://" not in value:
            OmegaConf.update(cfg, key, str(cwd / value), merge=False)
        elif OmegaConf.is_list(value):
            OmegaConf.update(cfg, key, [v if os.path.isabs(os.path.expanduser(str(v))) else str(cwd / str(v))
                                        for v in value], merge=False)


def run_task(cfg: DictConfig, config_name: str, script: str, body: Callable[[DictConfig, Job], RunResult]):
    """Run `body` as a Hydra job: validated config, absolute paths, one-line errors, the result recorded."""
    job = Job.current(script)
    _quiet_other_ranks()
    try:
        with open_dict(cfg):
            absolute_paths(cfg, job.original_cwd)
        VALIDATORS[config_name](cfg)
        result = body(cfg, job)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        result = RunResult(EXIT_USER_ERROR, status="failed", error=str(e))
    OUTCOMES.codes.append(result.exit_code)
    if not job.multirun and result.exit_code:
        sys.exit(result.exit_code)
    return result.value if result.value is not None or result.status == "completed" else math.nan


def _quiet_other_ranks() -> None:
    """Tasks started by submitit each run as a Hydra job: only rank 0 keeps a log file."""
    import logging
    env = detect_env()
    if env.enabled and not env.is_main:
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler, logging.FileHandler):
                logging.getLogger().removeHandler(handler)
                handler.close()


def write_result(job: Job, result: RunResult, metric: str) -> None:
    """`result.json` in the run dir: what the sweep summary (and a user) reads back."""
    record = {"status": result.status, "exit_code": result.exit_code, "metric": metric, "value": result.value,
              "metrics": result.metrics, "error": result.error, "run_dir": str(job.run_dir),
              "overrides": job.overrides, "job": job.num}
    write_atomic(job.run_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")


HYDRA_RECORD = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")


def remove_failed_start(run_dir: Path, log_names=("train.log",)) -> None:
    """A run that failed before it wrote anything of its own leaves no directory: only the files Hydra made
    for it are removed (and the folders, when that leaves them empty), never anything else."""
    import logging
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            handler.close()
            logging.getLogger().removeHandler(handler)
    for name in (*HYDRA_RECORD, *log_names, ".lock"):
        (run_dir / name).unlink(missing_ok=True)
    stop = EXISTING_ANCESTOR[0] if EXISTING_ANCESTOR else run_dir.parent
    for folder in (run_dir / ".hydra", run_dir, *run_dir.parents):
        if folder == stop or stop not in folder.parents:
            break
        try:
            folder.rmdir()
        except OSError:
            break


# ----------------------------------------------------------------------------------------- tasks

def train_task(cfg: DictConfig):
    """The task function of train.py: trains, returns the best value of the configured validation metric."""
    from .trainer import train

    def body(cfg: DictConfig, job: Job) -> RunResult:
        with open_dict(cfg):
            cfg.run_dir = str(job.run_dir)
        try:
            result = train(cfg, resume_command=job.resume_command())
        except UserError as e:
            if job.multirun:
                write_result(job, RunResult(EXIT_USER_ERROR, status="failed", error=str(e)), cfg.trainer.best_metric)
            else:
                remove_failed_start(job.run_dir)
            raise
        write_result(job, result, cfg.trainer.best_metric)
        return result

    return run_task(cfg, "train", "train.py", body)


def evaluate_task(cfg: DictConfig):
    """The task function of evaluate.py."""
    from .evaluation import evaluate

    def body(cfg: DictConfig, job: Job) -> RunResult:
        return RunResult(evaluate(cfg))

    return run_task(cfg, "evaluate", "evaluate.py", body)


def predict_task(cfg: DictConfig):
    """The task function of predict.py."""
    from .predict import run_predict
    return run_task(cfg, "predict", "predict.py", lambda cfg, job: RunResult(run_predict(cfg)))


def export_task(cfg: DictConfig):
    """The task function of export.py."""
    from .export import run_export
    return run_task(cfg, "export", "export.py", lambda cfg, job: RunResult(run_export(cfg)))
