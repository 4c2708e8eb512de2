"""Building blocks shared by both Inception families."""
from __future__ import annotations

import math
from dataclasses import field, fields
from typing import Any, NamedTuple

import torch
from torch import nn

# TensorFlow's batch-norm epsilon; torchvision's ported Inception weights were trained with it.
BN_EPS = 1e-3
# Attribute names of the auxiliary heads (GoogLeNet: aux1, aux2; factorized Inception: AuxLogits).
AUX_HEADS = ("aux1", "aux2", "AuxLogits")
AUX_PREFIXES = tuple(f"{name}." for name in AUX_HEADS)


def option(default: Any, *, choices: tuple | None = None, low: float | None = None, high: float | None = None):
    """A model option with the values it may take (checked by `ModelOptions`)."""
    return field(default=default, metadata={"choices": choices, "low": low, "high": high})


class ModelOptions:
    """Base of the model config dataclasses: every value is checked against its field's type and limits,
    so a preset file, a command-line override and a call in code are validated alike."""

    def __post_init__(self):
        for f in fields(self):
            problem = _option_problem(f.type, f.metadata, getattr(self, f.name))
            if problem:
                raise ValueError(f"{f.name}={getattr(self, f.name)!r} {problem}")


def _option_problem(kind: str, limits, value) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        return "must be an integer"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)):
        return "must be a number"
    if kind == "str" and not isinstance(value, str):
        return "must be a string"
    if limits.get("choices") is not None and value not in limits["choices"]:
        return f"is not one of: {', '.join(map(str, limits['choices']))}"
    if limits.get("low") is not None and value < limits["low"]:
        return f"must be >= {limits['low']}"
    if limits.get("high") is not None and value > limits["high"]:
        return f"must be <= {limits['high']}"
    return None


class InceptionOutputs(NamedTuple):
    """What a model returns in training mode: main logits and the auxiliary logits (possibly none)."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


class ConvBlock(nn.Module):
    """conv -> [batch norm] -> ReLU. Without batch norm the conv carries a bias (the paper's GoogLeNet).

    Attribute names (`conv`, `bn`) match torchvision's BasicConv2d so its weights load unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, batch_norm: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return torch.relu_(x)  # in place: neither conv nor batch norm needs its output for backward


class TransformInputToTF(nn.Module):
    """Map an ImageNet-normalised batch to the [-1, 1] scaling that torchvision's TF-ported weights expect.
    The constants are buffers (not saved): they move with the model, and no forward copies them from the host."""

    def __init__(self):
        super().__init__()
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.register_buffer("scale", torch.tensor([s / 0.5 for s in std]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor([(m - 0.5) / 0.5 for m in mean]).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def init_weights(model: nn.Module) -> None:
    """He init for convs, small normal for linear layers, BN to identity; deterministic under torch.manual_seed.

    With batch norm the convs use fan-out scaling (as torchvision's ResNets); without it (the paper's
    GoogLeNet) fan-in, which keeps the forward activations at unit scale through the 22 layers.
    """
    if any(p.is_meta for p in model.parameters()):
        return  # shapes only (e.g. models.registry's input size probe): there are no values to initialise
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out" if has_bn else "fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
