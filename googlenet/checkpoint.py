"""Checkpoints: written atomically, read safely (weights_only) with one-line errors."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from data.files import write_atomic

from .errors import UserError

FORMAT = "googlenet-inception/1"


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Readers never see half a file: see `data.files.write_atomic`."""
    return write_atomic(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def read_weights_file(path: str | Path, what: str = "checkpoint") -> object:
    """torch.load with weights_only=True (a file from elsewhere never runs code), and one-line errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} {path} not found; pass the path of an existing .pt/.pth file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a Python object that unpickling would have to import and run
            raise UserError(f"{path} is not a safe checkpoint: it holds Python objects besides tensors, which could "
                            "run code when loaded, so it was not loaded; save the weights alone with "
                            "torch.save(model.state_dict(), path)") from None
        raise UserError(f"{what} {path} is corrupt or not a checkpoint (unpickling failed)") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{what} {path} is corrupt or not a checkpoint ({first[:160]})") from None


def is_checkpoint(content) -> bool:
    return isinstance(content, dict) and content.get("format") == FORMAT


def state_dict_in(content) -> dict | None:
    """The tensors of a bare state dict (torchvision's .pth, or {"state_dict": ...}); None for anything else."""
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return content
    return None


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "config", "classes")) -> dict:
    """A checkpoint written by train.py, with the keys the caller needs."""
    path = Path(path).expanduser()
    content = read_weights_file(path)
    if not is_checkpoint(content):
        if state_dict_in(content) is not None:
            raise UserError(f"{path} holds bare weights (a state dict such as torchvision's), not a train.py "
                            f"checkpoint; to train from them pass model.weights={path}; to evaluate them pass "
                            "model=inception_v1_torchvision or model=inception_v3_torchvision")
        raise UserError(f"{path} is not a checkpoint written by train.py")
    missing = [k for k in required if k not in content]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete or from another tool")
    return content


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
        """End of an epoch: best.pt if the metric improved, last.pt, and the last `keep_last` epoch files.
        best.pt first: a kill between the two leaves the improvement in best.pt, and last.pt at the previous
        epoch, which a resume trains again."""
        if improved:
            self.save("best.pt", checkpoint)
        self.save("last.pt", checkpoint)
        if keep_last > 0 and self.enabled:
            self.save(f"epoch_{epoch}.pt", checkpoint)
            (self.folder / f"epoch_{epoch - keep_last}.pt").unlink(missing_ok=True)


class NonFiniteWeights(Exception):
    """The weights hold NaN or inf: nothing is saved (see Trainer, which reports it as a non-finite loss)."""


def finite(models) -> bool:
    """Whether every floating-point tensor of the models is finite (one device sync)."""
    tensors = [t for m in models for t in m.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
