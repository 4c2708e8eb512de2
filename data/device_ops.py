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


# Photometric distortions on whole batches, on the training device. Each sample's factors are drawn where its
# crop is drawn (the loader, from the sample's own seeded stream) and travel with the batch as a (B, 4) tensor:
# brightness, contrast and saturation factors (1 = unchanged) and a hue shift in turns (0 = unchanged).
# They are applied in that fixed order and computed as PIL's ImageEnhance / torchvision's ColorJitter do on
# PIL images: blends towards black, the mean grey, and the grey image, truncated to 8 bits after each step.
NEUTRAL_FACTORS = (1.0, 1.0, 1.0, 0.0)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's "L" conversion of (B, 3, H, W) 8-bit values: (R*299 + G*587 + B*114) / 1000, rounded."""
    return torch.floor((x[:, 0:1] * 19595 + x[:, 1:2] * 38470 + x[:, 2:3] * 7471 + 32768) / 65536)


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return torch.trunc(degenerate + factor.view(-1, 1, 1, 1) * (image - degenerate)).clamp_(0, 255)


def adjust_photometric(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) images with per-image (brightness, contrast, saturation, hue) factors (B, 4)."""
    x = images.float()
    factors = factors.to(device=x.device, dtype=torch.float32)
    brightness, contrast, saturation, hue = factors.unbind(1)
    x = _blend(torch.zeros_like(x), x, brightness)
    mean_grey = torch.floor(_luma(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    x = _blend(mean_grey.expand_as(x), x, contrast)
    x = _blend(_luma(x).expand_as(x), x, saturation)
    x = torch.round(shift_hue(x / 255, hue) * 255)
    return x.clamp_(0, 255).to(torch.uint8)


def shift_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of (B, 3, H, W) images in [0, 1] by `shift` (B,) turns, through HSV."""
    r, g, b = rgb.unbind(1)
    value, _ = rgb.max(1)
    chroma = value - rgb.min(1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(value == r, ((g - b) / safe) % 6,
                      torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    # HSV -> RGB: channel k is v - v*s*clamp(min(m, 4 - m), 0, 1) with m = (n_k + 6h) mod 6
    out = []
    for n in (5.0, 3.0, 1.0):
        m = (n + hue * 6) % 6
        out.append(value - value * saturation * torch.clamp(torch.minimum(m, 4 - m), 0, 1))
    return torch.stack(out, 1)
