"""The state of a training run, and the checkpoint dict that holds it (with the checks a resume needs)."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .errors import UserError


@dataclass
class RunState:
    epoch: int = 0                  # the epoch being (or next to be) trained
    batch_in_epoch: int = 0         # batches of `epoch` already trained (mid-epoch resume)
    step: int = 0                   # optimizer steps so far
    best: float | None = None       # best value of the configured validation metric
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's

    def is_better(self, value: float, lower_is_better: bool) -> bool:
        return self.best is None or (value < self.best if lower_is_better else value > self.best)


@dataclass
class RunResult:
    """How a task ended: the process exit status, and what a sweeper optimises."""

    exit_code: int = 0
    value: float | None = None      # the best value of the configured validation metric
    status: str = "completed"       # completed | stopped | failed
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def make_checkpoint(state: RunState, *, model, ema, optimizer, scaler, cfg, classes, names, device) -> dict:
    """Everything a resumed run needs, and what evaluation needs to rebuild the model."""
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        **asdict(state),
        "rng": rng_state(device),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "classes": list(classes), "class_names": list(names),
    }


def resume_path(resume, ckpt_dir: Path, launched_by_torchrun: bool) -> Path | None:
    """The checkpoint to resume from: `resume=PATH`, `resume=auto` (last.pt of this run dir, when it exists),
    or, under torchrun, auto by default so that an elastic restart continues the run."""
    if resume is None and launched_by_torchrun:
        resume = "auto"
    if resume is None:
        return None
    if resume == "auto":
        path = ckpt_dir / "last.pt"
        return path if path.is_file() else None
    return Path(str(resume)).expanduser()


def check_resumable(checkpoint: dict, path: Path, cfg, classes: list[str]) -> None:
    """The checkpoint must be for this model and these classes."""
    saved = checkpoint["config"]["model"]
    if saved["name"] != cfg.model.name or saved["num_classes"] != cfg.model.num_classes:
        raise UserError(f"checkpoint {path} is for model {saved['name']} with {saved['num_classes']} classes, "
                        f"not {cfg.model.name} with {cfg.model.num_classes}; pass the matching model=")
    if list(checkpoint["classes"]) != list(classes):
        raise UserError(f"checkpoint {path} was trained on different classes than {cfg.data.name}'s; "
                        "resume with the same dataset")


def restore_state(checkpoint: dict) -> RunState:
    return RunState(checkpoint["epoch"], checkpoint["batch_in_epoch"], checkpoint["step"], checkpoint["best"],
                    checkpoint["metrics"])


def apply_checkpoint(checkpoint: dict, *, model, ema, optimizer, scaler) -> RunState:
    """Load weights, EMA, optimizer and scaler state; returns the run's position."""
    model.load_state_dict(checkpoint["model"])
    if ema and checkpoint["ema"]:
        ema.load_state_dict(checkpoint["ema"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    return restore_state(checkpoint)
