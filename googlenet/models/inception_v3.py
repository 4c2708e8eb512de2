"""Factorized Inception, "Rethinking the Inception Architecture for Computer Vision", Szegedy et al. 2015.

Table 1 of the paper, at 299x299: stem -> 3 x Fig. 5 (35x35) -> grid reduction (Fig. 10) -> 5 x Fig. 6
(17x17, n=7) -> grid reduction -> 2 x Fig. 7 (8x8) -> avg pool -> dropout -> linear, with one auxiliary
classifier on the last 17x17 layer. The paper gives grid sizes and total widths, not per-branch filter
counts; those come from the TensorFlow reference model (the same numbers torchvision ships).

Module names follow torchvision's `inception_v3` (the TensorFlow layer names) so its weights load as
they are. In the paper flavour the `branch5x5` pair of the 35x35 modules uses a 3x3 kernel, since
Fig. 5 replaces every 5x5 convolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBlock, InceptionOutputs, ModelOptions, TransformInputToTF, init_weights, option

# Stems: (name, out channels, kernel, stride, padding) for convs; ("maxpool", ...) for 3x3/2 max pools.
# The paper's table ends the stem at 35x35x288 with a padded 3x3 conv; the text and the TF model use a
# 1x1 (80) conv and let the 35x35 modules grow the width. We follow the table (see the module docstring).
PAPER_STEM = (
    ("Conv2d_1a_3x3", 32, 3, 2, 0),   # 299 -> 149
    ("Conv2d_2a_3x3", 32, 3, 1, 0),   # 149 -> 147
    ("Conv2d_2b_3x3", 64, 3, 1, 1),   # 147 -> 147, padded
    ("maxpool1",),                    # 147 -> 73
    ("Conv2d_3b_3x3", 80, 3, 1, 0),   # 73 -> 71
    ("Conv2d_4a_3x3", 192, 3, 2, 0),  # 71 -> 35
    ("Conv2d_4b_3x3", 288, 3, 1, 1),  # 35 -> 35, padded
)
TORCHVISION_STEM = (
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    ("maxpool1",),
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
    ("maxpool2",),
)

# Body: (name, module kind, width argument). Kinds: "35" Fig. 5 (pool projection width),
# "17" Fig. 6 (width of the 1x7/7x1 towers), "8" Fig. 7, "reduce35", "reduce17" Fig. 10.
PAPER_BODY = (
    ("Mixed_5b", "35", 64), ("Mixed_5c", "35", 64), ("Mixed_5d", "35", 64),
    ("Mixed_6a", "reduce35", None),
    ("Mixed_6b", "17", 128), ("Mixed_6c", "17", 160), ("Mixed_6d", "17", 160),
    ("Mixed_6e", "17", 160), ("Mixed_6f", "17", 192),
    ("Mixed_7a", "reduce17", None),
    ("Mixed_7b", "8", None), ("Mixed_7c", "8", None),
)
TORCHVISION_BODY = (
    ("Mixed_5b", "35", 32), ("Mixed_5c", "35", 64), ("Mixed_5d", "35", 64),
    ("Mixed_6a", "reduce35", None),
    ("Mixed_6b", "17", 128), ("Mixed_6c", "17", 160), ("Mixed_6d", "17", 160), ("Mixed_6e", "17", 192),
    ("Mixed_7a", "reduce17", None),
    ("Mixed_7b", "8", None), ("Mixed_7c", "8", None),
)
FLAVOURS = {"paper": (PAPER_STEM, PAPER_BODY), "torchvision": (TORCHVISION_STEM, TORCHVISION_BODY)}


@dataclass(frozen=True)
class FactorizedInceptionConfig(ModelOptions):
    num_classes: int = option(1000, low=1)
    flavour: str = option("paper", choices=tuple(FLAVOURS))  # paper (Table 1), torchvision (its inception_v3)
    branch5x5_kernel: int = option(3, choices=(3, 5))         # 35x35 modules: 3 (Fig. 5) or 5 (torchvision)
    aux_logits: bool = True
    aux_batch_norm: bool = False    # "BN-auxiliary": batch-normalise the aux head's fully connected layer
    dropout: float = option(0.2, low=0, high=1)
    transform_input: bool = False


def _pool_avg(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1)


class Inception35(nn.Module):
    """Fig. 5: 1x1 | 1x1->kxk | 1x1->3x3->3x3 | avgpool->1x1."""

    def __init__(self, in_ch: int, pool_features: int, kernel: int):
        super().__init__()
        self.branch1x1 = ConvBlock(in_ch, 64, 1)
        self.branch5x5_1 = ConvBlock(in_ch, 48, 1)
        self.branch5x5_2 = ConvBlock(48, 64, kernel, padding=kernel // 2)
        self.branch3x3dbl_1 = ConvBlock(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, padding=1)
        self.branch_pool = ConvBlock(in_ch, pool_features, 1)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_pool_avg(x)),
        ], 1)


class GridReduction35(nn.Module):
    """Fig. 10, 35x35 -> 17x17: stride-2 conv branches beside a stride-2 max pool."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3 = ConvBlock(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBlock(in_ch, 64, 1)
        self.branch3x3dbl_2 = ConvBlock(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBlock(96, 96, 3, stride=2)
        self.out_channels = 384 + 96 + in_ch

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class Inception17(nn.Module):
    """Fig. 6 with n = 7: 7x7 convolutions factorized into 1x7 and 7x1."""

    def __init__(self, in_ch: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBlock(in_ch, 192, 1)
        self.branch7x7_1 = ConvBlock(in_ch, c7, 1)
        self.branch7x7_2 = ConvBlock(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBlock(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBlock(in_ch, c7, 1)
        self.branch7x7dbl_2 = ConvBlock(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBlock(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBlock(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBlock(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBlock(in_ch, 192, 1)
        self.out_channels = 4 * 192

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool_avg(x))], 1)


class GridReduction17(nn.Module):
    """Fig. 10, 17x17 -> 8x8."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch3x3_1 = ConvBlock(in_ch, 192, 1)
        self.branch3x3_2 = ConvBlock(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBlock(in_ch, 192, 1)
        self.branch7x7x3_2 = ConvBlock(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBlock(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBlock(192, 192, 3, stride=2)
        self.out_channels = 320 + 192 + in_ch

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class Inception8(nn.Module):
    """Fig. 7: the expanded filter bank, 3x3 outputs split into parallel 1x3 and 3x1."""

    def __init__(self, in_ch: int):
        super().__init__()
        self.branch1x1 = ConvBlock(in_ch, 320, 1)
        self.branch3x3_1 = ConvBlock(in_ch, 384, 1)
        self.branch3x3_2a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBlock(in_ch, 448, 1)
        self.branch3x3dbl_2 = ConvBlock(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBlock(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBlock(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBlock(in_ch, 192, 1)
        self.out_channels = 320 + 768 + 768 + 192

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(_pool_avg(x)),
        ], 1)


class AuxHead(nn.Module):
    """avg pool 5x5/3 -> 1x1 conv (128) -> FC 768 (a 5x5 conv over the 5x5 map) -> linear.

    With `batch_norm_fc` (the paper's BN-auxiliary) the FC layer is batch-normalised; torchvision's
    head always is.
    """

    def __init__(self, in_ch: int, num_classes: int, batch_norm_fc: bool):
        super().__init__()
        self.conv0 = ConvBlock(in_ch, 128, 1)
        self.conv1 = ConvBlock(128, 768, 5, batch_norm=batch_norm_fc)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=3)
        x = self.conv0(x)
        if min(x.shape[-2:]) < 5:  # inputs well below 299 px: keep the 5x5 "FC" layer usable
            x = F.adaptive_avg_pool2d(x, 5)
        x = F.adaptive_avg_pool2d(self.conv1(x), 1)
        return self.fc(torch.flatten(x, 1))


_MODULES = {"35": Inception35, "reduce35": GridReduction35, "17": Inception17,
            "reduce17": GridReduction17, "8": Inception8}


class FactorizedInception(nn.Module):
    def __init__(self, cfg: FactorizedInceptionConfig = FactorizedInceptionConfig()):
        super().__init__()
        self.cfg = cfg
        self.input_transform = TransformInputToTF() if cfg.transform_input else None
        stem_table, body_table = FLAVOURS[cfg.flavour]

        channels = 3
        self.stem_names: list[str] = []
        for name, *spec in stem_table:
            if name.startswith("maxpool"):
                layer = nn.MaxPool2d(3, stride=2)
            else:
                out, kernel, stride, padding = spec
                layer = ConvBlock(channels, out, kernel, stride=stride, padding=padding)
                channels = out
            setattr(self, name, layer)
            self.stem_names.append(name)

        self.body_names: list[str] = []
        for name, kind, width in body_table:
            if kind == "35":
                layer = Inception35(channels, width, cfg.branch5x5_kernel)
            elif kind == "17":
                layer = Inception17(channels, width)
            else:
                layer = _MODULES[kind](channels)
            channels = layer.out_channels
            setattr(self, name, layer)
            self.body_names.append(name)
            if kind == "17":
                self.aux_after, aux_channels = name, channels  # the last 17x17 layer wins

        self.AuxLogits = AuxHead(aux_channels, cfg.num_classes, cfg.aux_batch_norm) if cfg.aux_logits else None
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(channels, cfg.num_classes)
        init_weights(self)

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.stem_names + self.body_names]

    def forward(self, x: torch.Tensor):
        if self.input_transform is not None:
            x = self.input_transform(x)
        for name in self.stem_names:
            x = getattr(self, name)(x)
        aux = ()
        for name in self.body_names:
            x = getattr(self, name)(x)
            if name == self.aux_after and self.training and self.AuxLogits is not None:
                aux = (self.AuxLogits(x),)
        x = torch.flatten(self.avgpool(x), 1)
        logits = self.fc(self.dropout(x))
        if self.training:
            return InceptionOutputs(logits, aux)
        return logits
