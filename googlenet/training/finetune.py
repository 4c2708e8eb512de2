"""Starting from other weights: finetune.weights (fine-tuning), finetune.freeze and optim.backbone_lr_mult.

`finetune.weights=PATH` takes a torchvision `.pth` (googlenet / inception_v3 state dict) or a train.py checkpoint
(its EMA weights when it has them). Every tensor whose name and shape match is loaded; the classifier layers
(the main and the aux heads) keep their fresh initialisation when their shape differs (another class count);
any other tensor that does not fit is an error that lists them. Unlike `resume`, the optimizer, the schedule
and the step start afresh.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from common.checks import check_choice, check_number, get
from common.errors import UserError

from ..checkpoint import all_finite, read_weights
from ..models.layers import AUX_PREFIXES

# The classifier layers: the main head, and the auxiliary heads.
HEAD_PREFIXES = ("fc.", *AUX_PREFIXES)
FREEZE_CHOICES = (None, "features")


def check_finetune_config(cfg) -> None:
    weights = get(cfg, "finetune.weights")
    if weights is not None and not Path(str(weights)).expanduser().is_file():
        raise UserError(f"finetune.weights={weights} is not a file; pass a torchvision .pth or a train.py checkpoint")
    check_choice(cfg, "finetune.freeze", FREEZE_CHOICES)
    check_number(cfg, "optim.backbone_lr_mult", low=0)
    if cfg.resume is not None and weights is not None:
        raise UserError("resume= continues a run, finetune.weights= starts a new one from weights: pass one of them")


def is_head(name: str) -> bool:
    return name.startswith(HEAD_PREFIXES)


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # in the file, not in this model (e.g. aux heads turned off)

    def __str__(self) -> str:
        fresh = f"; re-initialised (new class count): {', '.join(self.reinitialised)}" if self.reinitialised else ""
        ignored = f"; not used: {len(self.ignored)} aux-head tensor(s)" if self.ignored else ""
        return f"started from {self.source}: loaded {len(self.loaded)} tensors{fresh}{ignored}"


def load_start_weights(model: nn.Module, path: Path) -> LoadReport:
    weights = read_weights(path, "finetune.weights")
    if not all_finite(weights.state):
        raise UserError(f"finetune.weights={path} holds non-finite weights (NaN or inf); a run cannot start from "
                        "them: pick another checkpoint")
    state, own = weights.state, model.state_dict()
    report = LoadReport(str(weights))
    merged, misfits = dict(own), []
    for name, tensor in own.items():
        if name in state and state[name].shape == tensor.shape:
            merged[name] = state[name]
            report.loaded.append(name)
        elif is_head(name) and name in state:
            report.reinitialised.append(name)
        else:
            shape = f" {tuple(state[name].shape)} vs {tuple(tensor.shape)}" if name in state else " missing"
            misfits.append(name + shape)
    unexpected = [k for k in state if k not in own]
    report.ignored = [k for k in unexpected if k.startswith(AUX_PREFIXES)]
    misfits += [f"{k} unexpected" for k in unexpected if not k.startswith(AUX_PREFIXES)]
    if misfits:
        more = f" ... (+{len(misfits) - 6} more)" if len(misfits) > 6 else ""
        raise UserError(f"finetune.weights={path} does not fit this model: {', '.join(misfits[:6])}{more}; "
                        "pick the matching model= (e.g. inception_v1_torchvision for torchvision's googlenet)")
    model.load_state_dict(merged)
    return report


def freeze_features(model: nn.Module) -> list[str]:
    """finetune.freeze=features: only the classifier heads train; returns the frozen modules' names."""
    frozen = []
    for name, param in model.named_parameters():
        if not is_head(name):
            param.requires_grad_(False)
    for name, module in model.named_modules():
        if name and not is_head(name + ".") and not any(p.requires_grad for p in module.parameters()):
            frozen.append(name)
    return frozen


def keep_frozen_in_eval(model: nn.Module, frozen: list[str]) -> None:
    """After model.train(): frozen layers stay in eval mode, so batch norm keeps its running statistics."""
    modules = dict(model.named_modules())
    for name in frozen:
        modules[name].eval()


def prepare_start(model: nn.Module, finetune_cfg, log) -> list[str]:
    """finetune.weights and finetune.freeze on a freshly built model; returns the frozen modules' names."""
    if finetune_cfg.weights:
        log.info(str(load_start_weights(model, finetune_cfg.weights)))
    return freeze_features(model) if finetune_cfg.freeze == "features" else []
