"""Building blocks shared by both Inception families."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

# TensorFlow's batch-norm epsilon; torchvision's ported Inception weights were trained with it.
BN_EPS = 1e-3
# Attribute names of the auxiliary heads (GoogLeNet: aux1, aux2; factorized Inception: AuxLogits).
AUX_HEADS = ("aux1", "aux2", "AuxLogits")
AUX_PREFIXES = tuple(f"{name}." for name in AUX_HEADS)


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


def transform_input_to_tf(x: torch.Tensor) -> torch.Tensor:
    """Map an ImageNet-normalised batch to the [-1, 1] scaling that torchvision's TF-ported weights expect."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    scale = x.new_tensor([s / 0.5 for s in std]).view(1, 3, 1, 1)
    shift = x.new_tensor([(m - 0.5) / 0.5 for m in mean]).view(1, 3, 1, 1)
    return x * scale + shift


def init_weights(model: nn.Module) -> None:
    """He init for convs, small normal for linear layers, BN to identity; deterministic under torch.manual_seed.

    With batch norm the convs use fan-out scaling (as torchvision's ResNets); without it (the paper's
    GoogLeNet) fan-in, which keeps the forward activations at unit scale through the 22 layers.
    """
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
