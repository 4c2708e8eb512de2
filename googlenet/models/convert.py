"""Load torchvision `googlenet` / `inception_v3` weights into the matching torchvision presets."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common.errors import UserError

from ..checkpoint import read_weights
from .layers import AUX_PREFIXES


def load_torchvision_weights(model: nn.Module, state_dict: dict[str, torch.Tensor] | str | Path) -> nn.Module:
    """Copy a torchvision state dict into `model` (an `*_torchvision` preset); strict on names and shapes.

    Aux-head weights are dropped when the model was built without aux heads. Whether the weights expect
    torchvision's `transform_input` scaling is a property of the preset (`transform_input`, on by default
    for the torchvision presets, as torchvision sets it for its pretrained weights).
    """
    if not isinstance(state_dict, dict):
        state_dict = read_weights(state_dict, "weights file").state
    own = model.state_dict()
    if not any(k.startswith(AUX_PREFIXES) for k in own):
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(AUX_PREFIXES)}
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise UserError(
            f"weights do not match {type(model).__name__}: missing keys {_short(missing)}; "
            f"unexpected keys {_short(unexpected)} (use the *_torchvision preset matching the checkpoint)")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items() if v.shape != own[k].shape]
    if wrong:
        raise UserError(f"weight shapes differ (checkpoint vs model): {_short(wrong)}; check num_classes")
    model.load_state_dict(state_dict)
    return model


def _short(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
