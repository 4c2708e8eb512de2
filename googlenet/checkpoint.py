"""Checkpoints: written atomically, read safely (weights_only) with one-line errors."""
from __future__ import annotations

from pathlib import Path

import torch

from data.files import write_atomic

from .errors import UserError

FORMAT = "googlenet-inception/1"


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Readers never see half a file: see `data.files.write_atomic`."""
    return write_atomic(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the path of a .pt file written by train.py")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint written by train.py (for torchvision weights use "
                        "model=inception_v1_torchvision or inception_v3_torchvision)")
    return state


class RunCheckpoints:
    """The checkpoints of one run in `<run dir>/checkpoints`: last.pt, best.pt and epoch_<N>.pt.

    Only rank 0 writes; on other ranks every method is a no-op.
    """

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder, self.enabled = Path(folder), enabled

    def path(self, name: str = "last.pt") -> Path:
        return self.folder / name

    def save(self, name: str, checkpoint: dict) -> Path | None:
        return save_checkpoint(checkpoint, self.folder / name) if self.enabled else None

    def save_epoch(self, checkpoint: dict, epoch: int, improved: bool, keep_last: int) -> None:
        """End of an epoch: last.pt, best.pt if the metric improved, and the last `keep_last` epoch files."""
        self.save("last.pt", checkpoint)
        if improved:
            self.save("best.pt", checkpoint)
        if keep_last > 0 and self.enabled:
            self.save(f"epoch_{epoch}.pt", checkpoint)
            (self.folder / f"epoch_{epoch - keep_last}.pt").unlink(missing_ok=True)
