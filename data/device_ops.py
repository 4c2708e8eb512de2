"""Batch operations that run on the training device: uint8 -> normalised float, and PCA lighting noise."""
from __future__ import annotations

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
