"""Checkpoints: written atomically, read safely (weights_only) with one-line errors."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from common.errors import UserError
from common.files import write_atomic

FORMAT = "googlenet-inception/2"  # /2: model.weights and model.freeze became finetune.weights / finetune.freeze


def save_checkpoint(state: dict, path: str | Path, also: tuple[str, ...] = ()) -> Path:
    """Readers never see half a file: see `common.files.write_atomic` (which also writes the names in `also`,
    first, as links to the same file)."""
    return write_atomic(path, lambda f: torch.save({"format": FORMAT, **state}, f), also)


def read_weights_file(path: str | Path, what: str = "checkpoint") -> object:
    """torch.load with weights_only=True (a file from elsewhere never runs code), and one-line errors."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} not found; pass the path of an existing .pt/.pth file")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a regular file (a folder, device or pipe); pass a .pt/.pth file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():  # a Python object that unpickling would import and run
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
    return _checked_checkpoint(read_weights_file(path), path, required)


def _checked_checkpoint(content, path: Path, required: tuple[str, ...]) -> dict:
    _refuse_other_formats(content, path)
    if not is_checkpoint(content):
        if state_dict_in(content) is not None:
            raise UserError(f"{path} holds bare weights (a state dict such as torchvision's), not a train.py "
                            f"checkpoint; to train from them pass finetune.weights={path}; to evaluate them pass "
                            "model=inception_v1_torchvision or model=inception_v3_torchvision")
        raise UserError(f"{path} is not a checkpoint written by train.py")
    missing = [k for k in required if k not in content]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete or from another tool")
    return content


def _refuse_other_formats(content, path: Path) -> None:
    found = content.get("format") if isinstance(content, dict) else None
    if isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/") and found != FORMAT:
        raise UserError(f"checkpoint {path} has format {found}, this version reads {FORMAT}; use the version of this "
                        "project that wrote it (git log googlenet/checkpoint.py), or train anew")


WEIGHT_CHOICES = ("auto", "raw", "ema")


@dataclass
class Weights:
    """The tensors of a weights file that a command uses, and where they came from."""

    state: dict[str, torch.Tensor]  # names as the model has them (DDP's "module." prefix removed)
    kind: str                       # "raw" or "ema" (of a train.py checkpoint), or "state dict" (bare weights)
    checkpoint: dict | None         # the whole train.py checkpoint (config, classes, ...); None for bare weights
    path: Path

    def __str__(self) -> str:
        return f"{self.path} ({'EMA weights' if self.kind == 'ema' else self.kind})"


def read_weights(path: str | Path, key: str, choice: str = "auto", what: str | None = None) -> Weights:
    """The weights in `path` (read once): a train.py checkpoint's EMA weights (`choice` auto, when it has them;
    or ema) or raw weights (raw), or a bare state dict such as torchvision's. `key` names the setting in
    errors, `what` the file (default: the key)."""
    path = Path(path).expanduser()
    content = read_weights_file(path, what or key)
    _refuse_other_formats(content, path)
    if is_checkpoint(content):
        checkpoint = _checked_checkpoint(content, path, ("model", "config", "classes"))
        has_ema = bool(checkpoint.get("ema"))
        use_ema = has_ema if choice == "auto" else choice == "ema"
        if use_ema and not has_ema:
            raise UserError(f"checkpoint {path} has no EMA weights (trained with ema.enabled=false); use weights=raw")
        state = checkpoint["ema"]["model"] if use_ema else checkpoint["model"]
        return Weights(_without_ddp_prefix(state), "ema" if use_ema else "raw", checkpoint, path)
    state = state_dict_in(content)
    if state is None:
        raise UserError(f"{key}={path} is neither a train.py checkpoint nor a state dict of weights; save one with "
                        "torch.save(model.state_dict(), path)")
    return Weights(_without_ddp_prefix(state), "state dict", None, path)


def _without_ddp_prefix(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


class RunCheckpoints:
    """The checkpoints of one run in `<run dir>/checkpoints`: last.pt, best.pt and epoch_<N>.pt.

    Only rank 0 writes; on other ranks every method is a no-op.
    """

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder, self.enabled = Path(folder), enabled

    def save(self, name: str, checkpoint: dict, also: tuple[str, ...] = ()) -> Path | None:
        return save_checkpoint(checkpoint, self.folder / name, also) if self.enabled else None

    def save_epoch(self, checkpoint: dict, epoch: int, improved: bool, keep_last: int) -> None:
        """End of an epoch: best.pt if the metric improved, the epoch file if `keep_last` asks for it, and
        last.pt, in that order: a kill in between leaves the improvement in best.pt, and last.pt at the previous
        epoch, which a resume trains again. One write; the other names are links to it."""
        keep = keep_last > 0 and self.enabled
        also = (["best.pt"] if improved else []) + ([f"epoch_{epoch}.pt"] if keep else [])
        self.save("last.pt", checkpoint, tuple(also))
        if keep:
            (self.folder / f"epoch_{epoch - keep_last}.pt").unlink(missing_ok=True)


def finite(models) -> bool:
    """Whether every floating-point tensor of the models is finite (one device sync)."""
    return all_finite({f"{i}.{k}": t for i, m in enumerate(models) for k, t in m.state_dict().items()})


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is finite (one device sync).

    A tensor's sum in float64 is finite exactly when its elements are (float32 and narrower values cannot
    overflow it), and it reads each tensor once without writing a mask of it: three times faster than
    isfinite().all() on a CPU, where a check runs at every checkpoint. float64 tensors are checked element-wise.
    """
    flags = [torch.isfinite(t).all() if t.dtype == torch.float64 else t.sum(dtype=torch.float64).isfinite()
             for t in state.values() if t.is_floating_point()]
    return not flags or bool(torch.stack(flags).all())
