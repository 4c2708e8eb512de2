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
- each training job writes `result.json` into its run dir, and a sweep ends with a line per job.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from common.errors import UserError

from ..distributed import detect_env
from .hydra_private import hydra_flags
from .job import EXIT_USER_ERROR, Session
from .launch import report_status
from .precheck import check_command_line

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(app: Callable[[], None], session: Session) -> None:
    """Run a `@hydra.main` app after checking its command line; exits with the task's status."""
    args = hydra_flags(sys.argv[1:])
    _export_repo_root()
    try:
        if _runs_the_task(args):
            session.precheck = check_command_line(session.config_name, args.overrides, args.multirun)
        env = detect_env()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        _exit(EXIT_USER_ERROR)
    if env.enabled and not env.is_main:  # rank 0 writes the run record and the log
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    try:
        app()
    except SystemExit as e:  # a single run's failure (Session.run_task) or Hydra's own exit
        _exit(e.code if isinstance(e.code, int) else 1)
    _exit(session.exit_code)


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
