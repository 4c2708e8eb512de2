"""The run directory: one writer at a time, and no leftovers from a writer that was killed."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from omegaconf import OmegaConf

from common.errors import UserError
from common.files import remove_stale_temp_files, write_atomic

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on `<run dir>/.lock` for as long as a trainer writes there (released by the OS when the
    process dies, so a killed run never blocks its resume). Only its owner ever removes the file: a run that
    created it and then failed to start, while still holding it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(self.path, os.O_RDWR), False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise UserError(busy_message(self.path.parent, _holder(self.path))) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its owner removed it between our open and our lock: lock the file that is there now
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd, self.created = fd, created
        return self

    def release(self, remove: bool = False) -> None:
        """Unlock; with `remove`, first delete the lock file if this run created it (a start that failed)."""
        if self.fd is not None:
            if remove and self.created:
                self.path.unlink(missing_ok=True)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def busy_message(run_dir: Path, holder: str) -> str:
    return (f"another trainer (pid {holder}) is writing to {run_dir}; wait for it to end or choose another "
            "hydra.run.dir")


def lock_holder(run_dir: Path) -> str | None:
    """The pid of a trainer that holds `run_dir`'s lock now, or None: a probe that takes nothing."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(path)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Temporary files that a killed save left behind (checkpoints are written to a temp name, then renamed)."""
    return remove_stale_temp_files(run_dir / "checkpoints") + remove_stale_temp_files(run_dir)


def refuse_existing_checkpoints(run_dir: Path, overwrite: bool) -> None:
    """A fresh run must not silently replace the checkpoints of the run that used its directory before."""
    existing = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    if existing and not overwrite:
        raise UserError(f"{run_dir} already holds checkpoints ({', '.join(existing)}); continue that run with "
                        "resume=auto, or pass trainer.overwrite=true to replace them")


def write_run_config(run_dir: Path, cfg) -> None:
    """`config.yaml`: the run's resolved config, as the run started (Hydra's `.hydra/` holds the overrides)."""
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))


# Folders a run directory must never be: a run writes checkpoints and logs there, and removes its own leftovers.
SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                  "/sbin", "/sys", "/usr", "/var")


def check_not_a_system_folder(run_dir: Path, key: str = "hydra.run.dir") -> None:
    resolved = Path(run_dir).expanduser().resolve()
    what = "a filesystem root" if resolved == resolved.parent else "a system folder"
    if str(resolved) in SYSTEM_FOLDERS or resolved == resolved.parent:
        raise UserError(f"{key}={run_dir} is {what}; a run writes its checkpoints and logs there: choose a folder "
                        f"of your own, e.g. {key}=runs/my_run")


def check_run_dir_free(run_dir: Path, resume, overwrite: bool, restartable: bool) -> None:
    """Before anything is written into `run_dir`: not a system folder, no live trainer holds it, and a fresh run
    (no resume, not under a launcher that restarts jobs) does not land on another run's checkpoints."""
    check_not_a_system_folder(run_dir)
    holder = lock_holder(run_dir)
    if holder is not None:
        raise UserError(busy_message(run_dir, holder))
    if resume is None and not restartable:
        refuse_existing_checkpoints(run_dir, overwrite)
