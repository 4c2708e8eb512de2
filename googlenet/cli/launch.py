"""torchrun with a truthful exit status after a stop signal:

    python -m googlenet.cli.launch [torchrun flags] train.py ...


The same launcher as `torchrun`, except for what happens on SIGTERM/SIGINT (what schedulers and Ctrl-C send):
torchrun forwards the signal to the workers and then re-raises it, exiting 1 even when every worker finished
its step, wrote last.pt and exited 0, which makes schedulers count a clean preemption as a failure. Here each
worker reports its exit status (train.py does, in `cli.main`), and the launcher exits 0 only when every
worker on this node reported 0; otherwise 1, naming the workers that did not. A user error (exit 2) on any
worker ends the group at once, without restarts, and the launcher prints its one line; the workers pass on
the launcher's flags, so that a stopped run's hint is the command that ran.
"""
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun_main

from common.errors import EXIT_USER_ERROR
from common.files import write_atomic

STATUS_DIR_ENV = "GOOGLENET_LAUNCH_STATUS_DIR"
FLAGS_ENV = "GOOGLENET_LAUNCH_FLAGS"  # this launcher's own flags, for the workers' resume hint


def launcher_flags(argv: list[str]) -> list[str]:
    """The launcher's flags: what comes before the training script (torchrun's own parser finds it)."""
    from torch.distributed.run import parse_args
    try:
        script = parse_args(argv).training_script
    except SystemExit:
        return []
    return argv[:argv.index(script)] if script in argv else []


_user_error: list[str] = []  # a worker's one-line error, reported with its exit status


def tell_user_error(message: str, every_rank: bool) -> None:
    """A one-line user error. Under this launcher the worker reports it with its exit status and the launcher
    prints it once (a worker it stops early may not have printed yet); elsewhere it is printed here, by every
    rank or only by local rank 0 (when every rank found the same)."""
    if os.environ.get(STATUS_DIR_ENV):
        _user_error[:] = [message]
    elif every_rank or os.environ.get("LOCAL_RANK", "0") == "0":
        print(f"error: {message}", file=sys.stderr)


def report_status(code: int) -> None:
    """Called by a worker as it exits: its exit status (and its user error), for the launcher that started it."""
    folder = os.environ.get(STATUS_DIR_ENV)
    if folder and os.path.isdir(folder):
        local_rank, local_world = os.environ.get("LOCAL_RANK", "0"), os.environ.get("LOCAL_WORLD_SIZE", "1")
        write_atomic(Path(folder, f"rank_{local_rank}"), f"{code} {local_world}\n{''.join(_user_error)}\n")


def _reports(folder: Path) -> dict[int, tuple[int, int, str]]:
    """{local rank: (exit status, local world size, user error or "")} from the workers' report files."""
    reports = {}
    for path in folder.glob("rank_*"):
        try:
            head, _, message = path.read_text().partition("\n")
            code, local_world = head.split()
            reports[int(path.name[5:])] = (int(code), int(local_world), message.strip())
        except (OSError, ValueError):
            continue
    return reports


def read_statuses(folder: Path) -> tuple[dict[int, int], int]:
    """({local rank: exit status}, local world size) from the workers' reports."""
    reports = _reports(folder)
    return {rank: code for rank, (code, _, _) in reports.items()}, max((w for _, w, _ in reports.values()), default=0)


def first_user_error(folder: Path) -> str | None:
    """The user error the lowest local rank reported, if any."""
    return next((message for _, (_, _, message) in sorted(_reports(folder).items()) if message), None)


class UserErrorWatch(threading.Thread):
    """A worker that reports a user error (a bad value, a missing dataset: exit 2) would fail the same way after
    every restart, and the ranks that did not see it wait in a collective: on the first such report the launcher
    stops the whole group at once (a SIGTERM to itself, which torchrun handles by ending every worker)."""

    def __init__(self, folder: Path, every: float = 0.05):
        super().__init__(daemon=True, name="user-error-watch")
        self.folder, self.every = folder, every
        self.done, self.fired = threading.Event(), False

    def run(self) -> None:
        while not self.done.wait(self.every):
            if EXIT_USER_ERROR in read_statuses(self.folder)[0].values():
                self.fired = True
                # torchrun's agent would log the signal as news; the worker's one-line error is the news
                logging.getLogger("torch.distributed.elastic.agent.server.api").setLevel(logging.ERROR)
                os.kill(os.getpid(), signal.SIGTERM)
                return


def expected_workers(argv) -> int:
    """--nproc_per_node as given (0 when it is "gpu"/"auto": then the workers' own reports tell)."""
    from torch.distributed.run import parse_args
    try:
        return int(parse_args(sys.argv[1:] if argv is None else argv).nproc_per_node)
    except (ValueError, SystemExit):
        return 0


def _failures(folder: Path, argv) -> tuple[dict[int, int], int, list[str]]:
    """The workers' reports, how many workers there were, and a line for each that did not exit 0."""
    codes, world = read_statuses(folder)
    world = max(world, expected_workers(argv), 1)
    failed = [f"rank {r}: {'exit ' + str(codes[r]) if r in codes else 'no report (killed or crashed)'}"
              for r in range(world) if codes.get(r) != 0]
    return codes, world, failed


def _user_error_exit(folder: Path) -> int:
    message = first_user_error(folder)
    if message:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv=None) -> int:
    folder = Path(tempfile.mkdtemp(prefix="googlenet-launch-"))
    os.environ[STATUS_DIR_ENV] = str(folder)
    os.environ[FLAGS_ENV] = shlex.join(launcher_flags(sys.argv[1:] if argv is None else list(argv)))
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)  # said below
    watch = UserErrorWatch(folder)
    watch.start()
    try:
        torchrun_main(argv)
        return 0
    except ChildFailedError:
        codes, world, failed = _failures(folder, argv)
        if codes and set(codes.values()) == {EXIT_USER_ERROR}:
            return _user_error_exit(folder)
        print(f"launcher: the run failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    except SignalException as e:
        codes, world, failed = _failures(folder, argv)
        if watch.fired:
            return _user_error_exit(folder)
        if not failed:
            print(f"launcher: stopped by {e.sigval.name}; all {world} worker(s) saved and exited 0; rerun the same "
                  "command with resume=auto to continue", file=sys.stderr)
            return 0
        print(f"launcher: stopped by {e.sigval.name}, but not cleanly: {'; '.join(failed)}", file=sys.stderr)
        return 1
    finally:
        watch.done.set()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
