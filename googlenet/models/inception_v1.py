"""GoogLeNet (Inception v1), "Going Deeper with Convolutions", Szegedy et al. 2014, Table 1.

One code path for the paper's network (LRN, conv biases, 5x5 branch, 3x3/2 pool before 5a) and
torchvision's port (batch norm, 3x3 in the "5x5" branch, 2x2/2 pool before 5a). Module names follow
torchvision's `googlenet` so its state dicts load without renaming.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBlock, InceptionOutputs, ModelOptions, TransformInputToTF, init_weights, option

# Table 1 of the paper: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    #        1x1  3x3red  3x3  5x5red  5x5  pool
    "3a": (  64,     96,  128,     16,  32,   32),
    "3b": ( 128,    128,  192,     32,  96,   64),
    "4a": ( 192,     96,  208,     16,  48,   64),
    "4b": ( 160,    112,  224,     24,  64,   64),
    "4c": ( 128,    128,  256,     24,  64,   64),
    "4d": ( 112,    144,  288,     32,  64,   64),
    "4e": ( 256,    160,  320,     32, 128,  128),
    "5a": ( 256,    160,  320,     32, 128,  128),
    "5b": ( 384,    192,  384,     48, 128,  128),
}
# Network body after the stem: inception modules, with max pools between the stages.
BODY = ("3a", "3b", "maxpool3", "4a", "4b", "4c", "4d", "4e", "maxpool4", "5a", "5b")
AUX_AFTER = {"4a": 0, "4d": 1}  # auxiliary classifier i is fed by this module's output
STEM_WIDTH = 192


@dataclass(frozen=True)
class GoogLeNetConfig(ModelOptions):
    num_classes: int = option(1000, low=1)
    batch_norm: bool = True                                 # False: the paper's LRN and biases on every conv
    branch5x5_kernel: int = option(5, choices=(3, 5))       # 5 as in the paper, 3 as in torchvision
    pool_before_5a: int = option(3, choices=(2, 3))         # the stride-2 max pool before 5a: 3 (paper), 2 (tv)
    dropout: float = option(0.4, low=0, high=1)
    aux_dropout: float = option(0.7, low=0, high=1)
    aux_logits: bool = True
    aux_pool: str = option("paper", choices=("paper", "adaptive"))  # paper: avg pool 5x5/3; adaptive: to 4x4
    transform_input: bool = False                           # torchvision's TF-ported weights expect [-1, 1] input


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool->1x1."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], branch5x5_kernel: int, batch_norm: bool):
        super().__init__()
        n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj = widths
        k = branch5x5_kernel
        self.branch1 = ConvBlock(in_ch, n1x1, 1, batch_norm=batch_norm)
        self.branch2 = nn.Sequential(
            ConvBlock(in_ch, n3x3red, 1, batch_norm=batch_norm),
            ConvBlock(n3x3red, n3x3, 3, padding=1, batch_norm=batch_norm),
        )
        self.branch3 = nn.Sequential(
            ConvBlock(in_ch, n5x5red, 1, batch_norm=batch_norm),
            ConvBlock(n5x5red, n5x5, k, padding=k // 2, batch_norm=batch_norm),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            ConvBlock(in_ch, pool_proj, 1, batch_norm=batch_norm),
        )
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxClassifier(nn.Module):
    """avg pool 5x5/3 -> 1x1 conv (128) -> FC 1024 -> dropout -> linear."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float, batch_norm: bool, pool: str):
        super().__init__()
        self.pool = pool
        self.conv = ConvBlock(in_ch, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At 224 px the 14x14 map pools to 4x4 exactly as in the paper; other input sizes pool to 4x4
        # adaptively so the FC layer keeps its shape.
        if self.pool == "paper" and (x.shape[-1] - 5) // 3 + 1 == 4 and (x.shape[-2] - 5) // 3 + 1 == 4:
            x = F.avg_pool2d(x, 5, stride=3)
        else:
            x = F.adaptive_avg_pool2d(x, 4)
        x = torch.flatten(self.conv(x), 1)
        x = self.dropout(torch.relu(self.fc1(x)))
        return self.fc2(x)


class GoogLeNet(nn.Module):
    def __init__(self, cfg: GoogLeNetConfig = GoogLeNetConfig()):
        super().__init__()
        self.cfg = cfg
        self.input_transform = TransformInputToTF() if cfg.transform_input else None
        bn = cfg.batch_norm
        lrn = (lambda: nn.Identity()) if bn else (lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))

        # Stem: conv 7x7/2 -> maxpool 3x3/2 -> [LRN] -> conv 1x1 -> conv 3x3 -> [LRN] -> maxpool 3x3/2.
        self.conv1 = ConvBlock(3, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = ConvBlock(64, 64, 1, batch_norm=bn)
        self.conv3 = ConvBlock(64, STEM_WIDTH, 3, padding=1, batch_norm=bn)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        channels = STEM_WIDTH
        aux_in: dict[int, int] = {}
        for name in BODY:
            if name == "maxpool3":
                layer = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "maxpool4":
                layer = nn.MaxPool2d(cfg.pool_before_5a, stride=2, ceil_mode=True)
            else:
                layer = InceptionModule(channels, INCEPTION_TABLE[name], cfg.branch5x5_kernel, bn)
                channels = layer.out_channels
                if name in AUX_AFTER:
                    aux_in[AUX_AFTER[name]] = channels
            setattr(self, self._attr(name), layer)
        self.num_features = channels

        if cfg.aux_logits:
            self.aux1 = AuxClassifier(aux_in[0], cfg.num_classes, cfg.aux_dropout, bn, cfg.aux_pool)
            self.aux2 = AuxClassifier(aux_in[1], cfg.num_classes, cfg.aux_dropout, bn, cfg.aux_pool)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(channels, cfg.num_classes)
        init_weights(self)

    @staticmethod
    def _attr(name: str) -> str:
        return name if name.startswith("maxpool") else f"inception{name}"

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The named layers in order, for summaries and per-stage shape checks."""
        stem = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
        return [(n, getattr(self, n)) for n in stem + [self._attr(b) for b in BODY]]

    def forward(self, x: torch.Tensor):
        if self.input_transform is not None:
            x = self.input_transform(x)
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x)
        x = self.lrn2(self.conv3(self.conv2(x)))
        x = self.maxpool2(x)
        want_aux = self.training and self.aux1 is not None
        aux = []
        for name in BODY:
            x = getattr(self, self._attr(name))(x)
            if want_aux and name in AUX_AFTER:
                aux.append((self.aux1, self.aux2)[AUX_AFTER[name]](x))
        x = torch.flatten(self.avgpool(x), 1)
        logits = self.fc(self.dropout(x))
        if self.training:
            return InceptionOutputs(logits, tuple(aux))
        return logits
