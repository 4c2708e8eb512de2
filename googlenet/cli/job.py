"""Inside Hydra: the job a task runs as, its one-line errors, its `result.json`, and the exit status."""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf, open_dict

from common.errors import UserError
from common.files import write_atomic

from ..distributed import detect_env
from ..provenance import provenance
from ..training.state import RunResult
from .config import VALIDATORS
from .hydra_callbacks import RESULT_FILE
from .launch import STATUS_DIR_ENV
from .precheck import RUN_RECORDS, Precheck

EXIT_USER_ERROR = 2
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

    @classmethod
    def current(cls, script: str) -> "Job":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        hc = HydraConfig.get()
        return cls(Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN, int(hc.job.get("num") or 0),
                   list(hc.overrides.task), script, Path(hc.runtime.cwd))

    def command(self) -> str:
        """This job as a command line (a sweep's job, or one started by submitit, as if run alone)."""
        return shlex.join([self.script, *self.overrides])

    def resume_command(self) -> str:
        """The command that continues this run: its own overrides, resume=auto and its run dir."""
        keep = [o for o in self.overrides if not o.lstrip("+").startswith(("resume=", "hydra.run.dir="))]
        args = shlex.join([*keep, "resume=auto", f"hydra.run.dir={self.run_dir}"])
        env = detect_env()
        launcher = "python"
        if env.launcher == "torchrun":  # started by torchrun, or by our launcher around it
            ours = os.environ.get(STATUS_DIR_ENV) is not None
            command = "python -m googlenet.cli.launch" if ours else "torchrun"
            launcher = f"{command} --nproc_per_node={env.local_world_size}"
        return f"{launcher} {self.script} {args}"


@dataclass
class Session:
    """One command: what its checks before Hydra found, and the exit statuses of the jobs it ran (a sweep's
    failed jobs make it 1). The entry point creates it and hands it to the task function."""

    config_name: str
    script: str
    precheck: Precheck = field(default_factory=Precheck)
    codes: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = [c for c in self.codes if c]
        if not failed:
            return 0
        return failed[0] if len(self.codes) == 1 else 1

    def run_task(self, cfg: DictConfig, body: Callable[[DictConfig, Job], RunResult]):
        """Run `body` as a Hydra job: validated config, absolute paths, one-line errors, the result recorded.
        Returns what a sweeper optimises."""
        job = Job.current(self.script)
        _quiet_other_ranks()
        try:
            with open_dict(cfg):
                absolute_paths(cfg, job.original_cwd)
            if not self.precheck.validated:  # values a sweeper chose while it runs
                VALIDATORS[self.config_name](cfg)
            result = body(cfg, job)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            result = RunResult(EXIT_USER_ERROR, status="failed", error=str(e))
        self.codes.append(result.exit_code)
        if not job.multirun and result.exit_code:
            sys.exit(result.exit_code)
        return result.value if result.value is not None or result.status == "completed" else math.nan

    def remove_failed_start(self, run_dir: Path) -> None:
        """A run that failed before it wrote anything of its own leaves no directory: only the records this
        command made for it are removed (and the folders, when that leaves them empty), never anything that
        was there before (another run's records) and never the lock (its owner removes it)."""
        _drop_log_files(run_dir)
        for name in RUN_RECORDS:
            if name not in self.precheck.existing_records:
                (run_dir / name).unlink(missing_ok=True)
        stop = self.precheck.existing_ancestor or run_dir.parent
        for folder in (run_dir / ".hydra", run_dir, *run_dir.parents):
            if folder == stop or stop not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break


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


def _quiet_other_ranks() -> None:
    """Tasks started by submitit each run as a Hydra job: only rank 0 keeps a log file."""
    env = detect_env()
    if env.enabled and not env.is_main:
        _drop_log_files()


def write_result(job: Job, result: RunResult, metric: str) -> None:
    """`result.json` in the run dir: what the sweep summary (and a user) reads back."""
    record = {"status": result.status, "exit_code": result.exit_code, "metric": metric, "value": result.value,
              "metrics": result.metrics, "error": result.error, "run_dir": str(job.run_dir),
              "overrides": job.overrides, "job": job.num,
              "provenance": {**(result.provenance or provenance(world_size=detect_env().world_size)),
                             "command": job.command()}}
    write_atomic(job.run_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")
