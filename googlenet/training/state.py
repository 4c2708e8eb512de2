"""The state of a training run, and the checkpoint dict that holds it, with the checks a resume needs."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from common.errors import UserError
from common.seeds import derive_seed

from .. import distributed as D
from ..provenance import provenance
from .position import SAVED as SAVED_POSITION
from .position import Position

# What a checkpoint must hold to resume a run (and evaluation reads the same file).
RESUME_KEYS = ("model", "ema", "optimizer", "optimizer_layout", "scaler", *SAVED_POSITION, "best", "metrics",
               "pending_validation", "rng", "config", "classes")


@dataclass
class RunState(Position):
    """The run's position, and how it is doing: what a checkpoint holds besides the tensors."""

    best: float | None = None       # best value of the configured validation metric
    metrics: dict[str, float] = field(default_factory=dict)  # the last finished epoch's
    pending_validation: bool = False  # the last finished epoch was saved before its validation ran

    def is_better(self, value: float, lower_is_better: bool) -> bool:
        return self.best is None or (value < self.best if lower_is_better else value > self.best)

    def saved(self) -> dict:
        return {**super().saved(), "best": self.best, "metrics": self.metrics,
                "pending_validation": self.pending_validation}


@dataclass
class RunResult:
    """How a task ended: the process exit status, and what a sweeper optimises."""

    exit_code: int = 0
    value: float | None = None      # the best value of the configured validation metric
    status: str = "completed"       # completed | stopped | failed
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    provenance: dict | None = None  # code, libraries, device, processes, command (of a run that started)
    stop_signal: int | None = None  # the signal that stopped it (handed on to the launcher's own handler)


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


def optimizer_layout(optimizer: torch.optim.Optimizer) -> dict:
    return {"type": type(optimizer).__name__, "groups": [len(g["params"]) for g in optimizer.param_groups]}


def make_checkpoint(state: RunState, *, model, ema, optimizer, scaler, cfg, classes, names, device,
                    env: D.DistEnv, global_batch: int) -> dict:
    """Everything a resumed run needs (every rank's random streams too), and what evaluation needs to rebuild
    the model. Called on every rank at the same point (it gathers the ranks' RNG states)."""
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema else None,
        "optimizer": optimizer.state_dict(),
        "optimizer_layout": optimizer_layout(optimizer),
        "scaler": scaler.state_dict(),
        **state.saved(),
        "rng": D.gather_objects(rng_state(device), env),
        "world_size": env.world_size, "global_batch": global_batch,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "classes": list(classes), "class_names": list(names),
        "provenance": provenance(device, env.world_size),
    }


def resume_path(resume, ckpt_dir: Path, restartable: bool) -> Path | None:
    """The checkpoint to resume from: `resume=PATH`, `resume=auto` (last.pt of this run dir, when it exists),
    or, under a launcher that restarts jobs (torchrun, submitit, srun), auto by default."""
    if resume is None and restartable:
        resume = "auto"
    if resume is None:
        return None
    if resume == "auto":
        path = ckpt_dir / "last.pt"
        return path if path.is_file() else None
    return Path(str(resume)).expanduser()


# Model keys a resumed run may change: they do not change the network's tensors.
ARCHITECTURE_EXEMPT = ("dropout", "aux_dropout")


def check_resumable(checkpoint: dict, path: Path, cfg, classes: list[str]) -> None:
    """The checkpoint must be a whole run of this model, these classes and this seed."""
    missing = [k for k in RESUME_KEYS if k not in checkpoint]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; resume from a last.pt written by train.py")
    saved = checkpoint["config"]["model"]
    if saved["name"] != cfg.model.name or saved["num_classes"] != cfg.model.num_classes:
        raise UserError(f"checkpoint {path} is for model {saved['name']} with {saved['num_classes']} classes, "
                        f"not {cfg.model.name} with {cfg.model.num_classes}; pass the matching model=")
    current = OmegaConf.to_container(cfg.model, resolve=True)
    changed = [k for k in sorted(set(saved) | set(current))
               if k not in ARCHITECTURE_EXEMPT and saved.get(k) != current.get(k)]
    if changed:
        what = ", ".join(f"model.{k}={saved.get(k)!r}" for k in changed)
        raise UserError(f"checkpoint {path} was trained with {what}; resume with the same model settings")
    if list(checkpoint["classes"]) != list(classes):
        raise UserError(f"checkpoint {path} was trained on different classes than {cfg.data.name}'s; "
                        "resume with the same dataset")
    seed = checkpoint["config"].get("seed")
    if seed is not None and seed != cfg.seed:
        raise UserError(f"checkpoint {path} was trained with seed={seed}; resume with seed={seed} (the seed fixes "
                        "the order of the samples and every random crop) or start a new run")


def resume_from(path: Path, cfg, classes: list[str], *, model, ema, optimizer, scaler, env: D.DistEnv,
                device: torch.device) -> tuple[RunState, list[str]]:
    """Load a checkpoint into a run built from `cfg` (after the checks): its position, and notes for the log."""
    from ..checkpoint import load_checkpoint
    checkpoint = load_checkpoint(path, required=RESUME_KEYS)
    check_resumable(checkpoint, path, cfg, classes)
    state, notes = apply_checkpoint(checkpoint, path, model=model, ema=ema, optimizer=optimizer, scaler=scaler)
    rngs = checkpoint["rng"]
    if len(rngs) == env.world_size:  # the exact random streams of every rank
        restore_rng(rngs[env.rank], device)
    else:
        torch.manual_seed(derive_seed(cfg.seed, "rank", env.rank, state.step))
        notes.append(f"{len(rngs)} process(es) wrote it, {env.world_size} resume it: new random streams")
    return state, notes


def apply_checkpoint(checkpoint: dict, path: Path, *, model, ema, optimizer, scaler) -> tuple[RunState, list[str]]:
    """Load weights, EMA, optimizer and scaler state; returns the run's position and notes for the log.

    The optimizer's hyperparameters (momentum, weight decay, ...) come from the config, not the checkpoint:
    a resumed run does what config.yaml says. A different optimizer or parameter grouping is an error.
    """
    model.load_state_dict(checkpoint["model"])
    if ema and checkpoint["ema"]:
        ema.load_state_dict(checkpoint["ema"])
    notes = _load_optimizer(checkpoint, path, optimizer)
    if scaler.is_enabled() and not checkpoint["scaler"]:
        notes.append("runtime.precision=fp16 now: the gradient scaler starts afresh")
    elif scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    state = RunState(**{k: checkpoint[k] for k in (*SAVED_POSITION, "best", "metrics", "pending_validation")})
    return state, notes


def _load_optimizer(checkpoint: dict, path: Path, optimizer: torch.optim.Optimizer) -> list[str]:
    saved = checkpoint["optimizer_layout"]
    now = optimizer_layout(optimizer)
    if saved["type"] != now["type"]:
        raise UserError(f"checkpoint {path} was trained with the {saved['type']} optimizer, not {now['type']}; "
                        "resume with the same optim= (or start a new run from its weights with finetune.weights=)")
    if saved["groups"] != now["groups"]:
        raise UserError(f"checkpoint {path} groups the parameters differently (e.g. optim.no_decay_norm_bias or "
                        "finetune.freeze changed); resume with the same settings")
    configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(checkpoint["optimizer"])
    notes = []
    for i, (group, wanted) in enumerate(zip(optimizer.param_groups, configured)):
        for key, value in wanted.items():
            if key not in ("lr", "initial_lr") and group.get(key) != value:
                notes.append(f"optimizer group {i}: {key} {group.get(key)} -> {value} (from the config)")
        group.update(wanted)
    return notes
