"""Batch operations that run on the training device: uint8 -> normalised float, and PCA lighting noise."""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# AlexNet's PCA lighting noise: eigenvalues and eigenvectors of the ImageNet RGB covariance (pixels in [0, 1]).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))


class BatchNormalizer(nn.Module):
    """uint8 NCHW batch -> float, optional lighting noise (training), mean/std normalisation."""

    def __init__(self, lighting_std: float = 0.0, channels_last: bool = False):
        super().__init__()
        self.lighting_std = lighting_std
        self.channels_last = channels_last
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        self.register_buffer("scale", 1 / std, persistent=False)
        self.register_buffer("shift", -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255 / std, persistent=False)
        self.register_buffer("eigval", torch.tensor(PCA_EIGVAL), persistent=False)
        self.register_buffer("eigvec", torch.tensor(PCA_EIGVEC), persistent=False)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float()
        if self.training and self.lighting_std > 0:
            alpha = torch.randn(x.shape[0], 3, device=x.device, generator=generator) * self.lighting_std
            offset = (alpha * self.eigval) @ self.eigvec.T * 255  # per image RGB shift
            x = x + offset.view(-1, 3, 1, 1)
        x = torch.addcmul(self.shift, x, self.scale)  # (x - mean) / std in one pass
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


# Photometric distortions on whole batches, on the training device. Each sample's factors are drawn where its
# crop is drawn (the loader, from the sample's own seeded stream) and travel with the batch as a (B, 4) tensor:
# brightness, contrast and saturation factors (1 = unchanged) and a hue shift in turns (0 = unchanged).
# They are ColorJitter's / PIL's operations, in that order: blends towards black, towards the mean grey, towards
# the grey image, and a hue rotation (about the grey axis of the RGB cube, where PIL shifts the hue in HSV). Being
# linear, together they are one 3x3 colour matrix and an offset per image, applied in a single pass; PIL rounds
# and clips to 8 bits after every step, so results differ from its by about 1.5 levels of 255 on average for
# brightness, contrast and saturation and 3.5 with hue on ImageNet photographs (5.1 on the sample set's saturated
# renderings; tests/test_device_ops.py).
NEUTRAL_FACTORS = (1.0, 1.0, 1.0, 0.0)
LUMA = (0.299, 0.587, 0.114)  # PIL's "L" conversion (ITU-R 601-2)


@functools.lru_cache(maxsize=None)
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """LUMA and the cross-product matrix of the grey axis, made once per device: a tensor built from Python
    numbers on every batch would be a copy from host memory, which makes the GPU wait."""
    k = 1 / math.sqrt(3)
    cross = torch.tensor([[0, -k, k], [k, 0, -k], [-k, k, 0]]).to(device)
    return torch.tensor(LUMA).to(device), cross


def _hue_rotation(turns: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations of RGB about the grey axis (1, 1, 1) by `turns` (Rodrigues' formula)."""
    angle = 2 * math.pi * turns
    cross = _constants(turns.device)[1]
    eye = torch.eye(3, device=turns.device)
    return eye + torch.sin(angle).view(-1, 1, 1) * cross + (1 - torch.cos(angle)).view(-1, 1, 1) * (cross @ cross)


def adjust_photometric(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) images with per-image (brightness, contrast, saturation, hue) factors (B, 4)."""
    batch = images.shape[0]
    x = images.float().view(batch, 3, -1)
    brightness, contrast, saturation, hue = factors.to(device=x.device, dtype=torch.float32).unbind(1)
    luma = _constants(x.device)[0]
    mean_grey = brightness * (x.mean(dim=2) @ luma)  # of the brightened image, as PIL's contrast takes it
    eye = torch.eye(3, device=x.device)
    towards_grey = saturation.view(-1, 1, 1) * eye + (1 - saturation).view(-1, 1, 1) * luma.view(1, 1, 3)
    matrix = (contrast * brightness).view(-1, 1, 1) * (_hue_rotation(hue) @ towards_grey)
    offset = ((1 - contrast) * mean_grey).view(-1, 1, 1)  # grey stays grey under saturation and hue
    out = torch.baddbmm(offset, matrix, x)
    return out.clamp_(0, 255).round_().to(torch.uint8).view_as(images)
