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
    process dies, so a killed run never blocks its resume)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"another trainer (pid {holder}) is writing to {self.path.parent}; wait for it to end "
                            "or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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
