"""Inside Hydra: the job a task runs as, its one-line errors, its `result.json`, and the exit status."""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from common.errors import EXIT_USER_ERROR, UserError
from common.files import write_atomic
from common.signals import hand_on

from ..distributed import detect_env
from ..provenance import provenance
from ..training.state import RunResult
from .config import VALIDATORS, first_line
from .launch import FLAGS_ENV, STATUS_DIR_ENV, tell_user_error
from .precheck import HYDRA_RECORDS, LOG_FILE, Precheck, run_records
from .sweep import NOT_RUN, sweep_id, write_job_record

RESULT_FILE = "result.json"
# Keys that hold paths a user types relative to where they run the command (Hydra may chdir later).
PATH_KEYS = ("data.root", "resume", "ckpt", "probs", "output", "finetune.weights", "images")


@dataclass
class Job:
    """The Hydra job the task function runs as."""

    run_dir: Path
    multirun: bool
    num: int
    overrides: list[str]
    script: str
    original_cwd: Path
    sweep: str | None = None          # the id of the training sweep this job belongs to (sweep.py)
    sweep_dir: Path | None = None
    config_record: str = ""           # the task config as Hydra composed it, for `.hydra/config.yaml`

    @classmethod
    def current(cls, script: str, cfg: DictConfig) -> "Job":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(Path(hc.runtime.output_dir), multirun, int(hc.job.get("num") or 0), list(hc.overrides.task),
                   script, Path(hc.runtime.cwd), sweep_id(hc) if multirun else None,
                   Path(hc.sweep.dir).absolute() if multirun else None, OmegaConf.to_yaml(cfg))

    def write_records(self, subdir: str | None) -> None:
        """Hydra's record of the run (`config.yaml`, `hydra.yaml`, `overrides.yaml` in `subdir`, as Hydra writes
        them), written by the run once it holds its run dir, never over another run's record."""
        from hydra.core.hydra_config import HydraConfig
        if not subdir:
            return
        hydra = OmegaConf.create({"hydra": OmegaConf.to_container(HydraConfig.get())})
        hydra.hydra.output_subdir = subdir
        texts = (self.config_record, OmegaConf.to_yaml(hydra), OmegaConf.to_yaml(OmegaConf.create(self.overrides)))
        for name, text in zip(HYDRA_RECORDS, texts):
            write_atomic(self.run_dir / subdir / name, text)

    def command(self) -> str:
        """This job as a command line (a sweep's job, or one started by submitit, as if run alone)."""
        return shlex.join([self.script, *self.overrides])

    def resume_command(self) -> str:
        """The command that continues this run: the launcher as it was started (our launcher passes its flags
        on; for torchrun the process count), its own overrides, resume=auto and its run dir."""
        keep = [o for o in _last_of_each_key(self.overrides)
                if not o.lstrip("+").startswith(("resume=", "hydra.run.dir="))]
        args = shlex.join([*keep, "resume=auto", f"hydra.run.dir={self.run_dir}"])
        env = detect_env()
        launcher = "python"
        if env.launcher == "torchrun":  # started by torchrun, or by our launcher around it
            ours = os.environ.get(STATUS_DIR_ENV) is not None
            flags = (os.environ.get(FLAGS_ENV) if ours else None) or f"--nproc_per_node={env.local_world_size}"
            launcher = f"{'python -m googlenet.cli.launch' if ours else 'torchrun'} {flags}"
        return f"{launcher} {self.script} {args}"


@dataclass
class Session:
    """One command: what its checks before Hydra found, and the exit statuses of the jobs it ran (a sweep's
    failed jobs make it 1). The entry point creates it and hands it to the task function."""

    config_name: str
    script: str
    precheck: Precheck = field(default_factory=Precheck)
    codes: list[int] = field(default_factory=list)
    sweep: str | None = None  # this command's training sweep (sweep.py)
    # the first job of this sweep that a signal stopped: the jobs after it do not start (that job itself may run
    # again: submitit requeues a stopped job with this object as it was then)
    stopped_job: int | None = None

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.codes if c]
        if not failed:
            return 0
        return failed[0] if len(self.codes) == 1 else 1

    def run_task(self, cfg: DictConfig, body: Callable[[DictConfig, Job], RunResult]):
        """Run `body` as a Hydra job: validated config, absolute paths, one-line errors, the result recorded.
        Returns what a sweeper optimises: the job's value, None when it did not complete (a sweeper such as
        Optuna's then records a failed trial and goes on)."""
        job = Job.current(self.script, cfg)
        _quiet_other_ranks()
        if job.multirun and self.stopped_job not in (None, job.num):
            result = RunResult(0, status=NOT_RUN)
            _remove_if_empty(job.run_dir)
        else:
            try:
                with open_dict(cfg):
                    absolute_paths(cfg, job.original_cwd)
                if not self.precheck.validated:  # values a sweeper chose while it runs
                    VALIDATORS[self.config_name](cfg)
                result = body(cfg, job)
            except UserError as e:
                tell_user_error(str(e), every_rank=True)  # one rank may be the only one to find it
                result = RunResult(EXIT_USER_ERROR, status="failed", error=str(e))
            except Exception as e:  # a bug or a crash: recorded for the sweep's summary, then Hydra reports it
                _record_in_sweep(job, RunResult(1, status="failed", error=f"{type(e).__name__}: {first_line(e)}"))
                raise
        self.codes.append(result.exit_code)
        if job.multirun and result.status == "stopped" and self.stopped_job is None:
            self.stopped_job = job.num
        _record_in_sweep(job, result, OmegaConf.select(cfg, "trainer.best_metric", default=None))
        hand_on(result.stop_signal)  # all recorded: under submitit, USR2 now requeues the job (it resumes last.pt)
        if not job.multirun and result.exit_code:
            sys.exit(result.exit_code)
        return result.value if result.status == "completed" else None

    def remove_failed_start(self, run_dir: Path) -> None:
        """A run that failed before it wrote anything of its own leaves no directory: only the records this
        command made for it are removed (and the folders, when that leaves them empty), never anything that
        was there before (another run's records) and never the lock (its owner removes it)."""
        _drop_log_files(run_dir)
        for name in run_records(self.precheck.records_subdir):
            if name not in self.precheck.existing_records:
                (run_dir / name).unlink(missing_ok=True)
        stop = self.precheck.existing_ancestor or run_dir.parent
        subdir = self.precheck.records_subdir
        for folder in ((run_dir / subdir,) if subdir else ()) + (run_dir, *run_dir.parents):
            if folder == stop or stop not in folder.parents:
                break
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                break


def _last_of_each_key(overrides: list[str]) -> list[str]:
    """Overrides with a key given twice (a script's default, then the user's) reduced to the one that won."""
    last = {o.split("=", 1)[0].lstrip("+~"): i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[o.split("=", 1)[0].lstrip("+~")] == i]


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


def _drop_log_files(folder: Path | None = None) -> None:
    """Close and remove the root logger's file handlers (those writing into `folder`, or all)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and folder in (None, Path(handler.baseFilename).parent):
            root.removeHandler(handler)
            handler.close()


def _remove_if_empty(run_dir: Path) -> None:
    """The folder Hydra made for a job that never ran (holding only an empty log), if nothing else is there."""
    _drop_log_files(run_dir)
    log = run_dir / LOG_FILE
    if log.is_file() and log.stat().st_size == 0:
        log.unlink()
    try:
        run_dir.rmdir()
    except OSError:
        pass


def _quiet_other_ranks() -> None:
    """Tasks started by submitit each run as a Hydra job: only rank 0 keeps a log file."""
    env = detect_env()
    if env.enabled and not env.is_main:
        _drop_log_files()


def result_record(job: Job, result: RunResult, metric: str | None) -> dict:
    return {"status": result.status, "exit_code": result.exit_code, "metric": metric, "value": result.value,
            "metrics": result.metrics, "error": result.error, "run_dir": str(job.run_dir),
            "overrides": job.overrides, "job": job.num,
            "provenance": {**(result.provenance or provenance(world_size=detect_env().world_size)),
                           "command": job.command()}}


def _record_in_sweep(job: Job, result: RunResult, metric: str | None = None) -> None:
    """How a job of a training sweep ended, in the sweep's records (rank 0 of the job writes it)."""
    if job.sweep is not None and detect_env().is_main:
        write_job_record(job.sweep_dir, job.sweep, job.num, result_record(job, result, metric))


def write_result(job: Job, result: RunResult, metric: str) -> None:
    """`result.json` in the run dir, written by the run that owns it: how it ended, for a user and for tools."""
    write_atomic(job.run_dir / RESULT_FILE, json.dumps(result_record(job, result, metric), indent=2) + "\n")
