"""The entry points' `__main__`: check the command line before Hydra creates anything, run the `@hydra.main`
app, and turn user errors into one line on stderr and an exit status.

    session = Session("train", "train.py")

    @hydra.main(config_path="configs", config_name="train") def main(cfg): return tasks.train(cfg, session)
    if __name__ == "__main__": command.run(main, session)

Everything Hydra offers works as Hydra documents it (`-m`, `--cfg`, `--info`, `--help`, `-sc`, launchers,
sweepers, `hydra.job.chdir`, `${hydra:...}`); what this adds:
- a typo'd key, a bad value, an unknown option, bad override syntax or `++key` for a missing key is one line
  (`error: ...`), exit status 2, and no run directory (the checks run before Hydra makes one; in a sweep
  every job's values are checked first);
- ranks other than 0 of a DDP job write no `.hydra/` and no log file;
- a training run's `.hydra/` record is written by the run itself once it holds the run dir's lock (Hydra
  would write it before the task runs, over the record of a run that owns the folder);
- each training job writes `result.json` into its run dir; a training sweep ends with a line per job and an
  exit status that says whether every job finished (`sweep.py`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from common.errors import EXIT_USER_ERROR, UserError

from ..distributed import detect_env
from .hydra_private import hydra_flags
from .job import Session
from .launch import report_status, tell_user_error
from .precheck import check_command_line
from .sweep import (
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    continue_command,
    new_sweep_id,
    read_job_records,
    slurm_setup_override,
    summary_lines,
    sweep_exit_code,
    sweep_overrides,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(app: Callable[[], None], session: Session) -> None:
    """Run a `@hydra.main` app after checking its command line; exits with the task's status."""
    user_args = sys.argv[1:]
    args = hydra_flags(user_args)
    _export_repo_root()
    runs_the_task = _runs_the_task(args)
    try:
        if runs_the_task:
            session.precheck = check_command_line(session.config_name, args.overrides, args.multirun)
        env = detect_env()
    except UserError as e:
        tell_user_error(str(e), every_rank=False)  # every rank checked the same command line
        _exit(EXIT_USER_ERROR)
    sweep_dir = session.precheck.sweep_dir if session.config_name == "train" else None
    if sweep_dir is not None:
        session.sweep = new_sweep_id()
        sys.argv += sweep_overrides(sweep_dir, session.sweep)
    setup = slurm_setup_override(session.precheck.slurm_setup)
    if setup:
        sys.argv.append(setup)
    if runs_the_task and session.config_name == "train":  # the run writes its record itself (Job.write_records)
        sys.argv += ["hydra.output_subdir=null"]
    if env.enabled and not env.is_main:  # rank 0 writes the run record and the log
        sys.argv += ["hydra/job_logging=none", "hydra/hydra_logging=none"]
    try:
        app()
    except SystemExit as e:  # a single run's failure (Session.run_task) or Hydra's own exit
        _exit(e.code if isinstance(e.code, int) else 1)
    if sweep_dir is not None:
        _exit(report_sweep(session, sweep_dir, user_args))
    _exit(session.exit_code)


def report_sweep(session: Session, sweep_dir: Path, user_args: list[str]) -> int:
    """One line per job of this sweep (read back from what each job recorded, so any launcher works), how to
    finish a stopped sweep, and the sweep's exit status."""
    records = read_job_records(sweep_dir, session.sweep)
    lines = summary_lines(records)
    if lines:
        print(f"sweep summary ({len(lines)} job(s), {sweep_dir}):")
        for line in lines:
            print(f"  {line}")
    if not records:
        print(f"no job of this sweep recorded how it ended (in {sweep_dir}/.jobs)", file=sys.stderr)
        return session.exit_code or EXIT_FAILED
    code = sweep_exit_code(records) or session.exit_code
    if code == EXIT_INCOMPLETE:
        print(f"the sweep was stopped before every job finished; continue it with: "
              f"{continue_command(session.script, user_args, sweep_dir)}")
    return code


def _exit(code: int) -> None:
    report_status(code)
    sys.exit(code)


def _runs_the_task(args) -> bool:
    return not (args.help or args.hydra_help or args.cfg or args.info or args.shell_completion)


def _export_repo_root() -> None:
    """Child processes (submitit jobs, loader workers started by spawn) import this package too."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, paths)])
