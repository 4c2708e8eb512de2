"""Per-image transforms, from a file path to a CHW uint8 tensor.

Training follows the GoogLeNet paper: a random crop of 8%..100% of the area with aspect ratio in
[3/4, 4/3], a random flip, photometric distortions and (optionally) a random interpolation. Every random
choice comes from a `random.Random` handed in per sample, seeded by (seed, epoch, index), so batches are
reproducible whatever the number of workers. The worker crops, resizes and flips; the photometric factors
it draws travel with the batch and are applied, with normalisation and the PCA lighting noise, on the
device to whole batches (see `data.device_ops`).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from PIL import Image

from .device_ops import NEUTRAL_FACTORS
from .imaging import draft_for_scale, open_image, pil_to_uint8_tensor, to_rgb

# The paper's "random interpolation": bilinear, area, nearest neighbour and cubic.
INTERPOLATIONS = {
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
}


def sample_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                    rng: random.Random) -> tuple[float, float, float, float]:
    """(left, top, w, h) covering a random fraction `scale` of the area with aspect ratio (w/h) in `ratio`.

    Area and log-aspect are drawn uniformly; up to 10 draws that do not fit are retried, then the
    largest centred box with the aspect ratio clamped into `ratio` is used.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = math.sqrt(target * aspect)
        h = math.sqrt(target / aspect)
        if 1 <= w <= width and 1 <= h <= height:
            return rng.uniform(0, width - w), rng.uniform(0, height - h), w, h
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
    return (width - w) / 2, (height - h) / 2, w, h


@dataclass
class PhotometricDistortion:
    """Brightness, contrast, saturation and hue jitter (factors drawn as ColorJitter's); applied on the device
    by `data.device_ops.adjust_photometric`."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0

    @classmethod
    def from_augment(cls, augment) -> "PhotometricDistortion | None":
        """The distortion a `data.augment` config asks for, or None when every amount is 0."""
        amounts = [augment.get(k, 0) for k in ("brightness", "contrast", "saturation", "hue")]
        return cls(*amounts) if any(a > 0 for a in amounts) else None

    def factors(self, rng: random.Random) -> tuple[float, float, float, float]:
        """(brightness, contrast, saturation, hue shift); a disabled one is neutral and draws nothing."""
        def factor(amount):
            return rng.uniform(max(0.0, 1 - amount), 1 + amount) if amount > 0 else 1.0
        b, c, s = factor(self.brightness), factor(self.contrast), factor(self.saturation)
        return b, c, s, rng.uniform(-self.hue, self.hue) if self.hue > 0 else 0.0


@dataclass(frozen=True)
class CropDraw:
    """The random choices for one training sample, drawn up front in a fixed order."""

    box: tuple[float, float, float, float]   # left, top, width, height in the original image
    interpolation: str                       # a key of INTERPOLATIONS
    flip: bool
    photometric: tuple[float, float, float, float]


@dataclass
class TrainTransform:
    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    photometric: PhotometricDistortion | None = None
    random_interpolation: bool = False
    fast_decode: bool = True  # JPEG draft decoding when the crop is shrunk 2x or more

    def draw(self, width: int, height: int, rng: random.Random) -> CropDraw:
        """Every random choice of a sample; the CPU and the device decode paths share it, so they agree."""
        box = sample_crop_box(width, height, self.scale, self.ratio, rng)
        interpolation = rng.choice(list(INTERPOLATIONS)) if self.random_interpolation else "bilinear"
        flip = self.hflip and rng.random() < 0.5
        photometric = self.photometric.factors(rng) if self.photometric else NEUTRAL_FACTORS
        return CropDraw(box, interpolation, flip, photometric)

    def __call__(self, path, rng: random.Random) -> tuple[torch.Tensor, tuple[float, float, float, float]]:
        """(uint8 CHW crop, its photometric factors)."""
        img = open_image(path)
        d = self.draw(*img.size, rng)
        left, top, w, h = d.box
        sx, sy = draft_for_scale(img, min(w, h) / self.size) if self.fast_decode else (1.0, 1.0)
        img = to_rgb(img)
        box = (left / sx, top / sy, (left + w) / sx, (top + h) / sy)
        img = img.resize((self.size, self.size), INTERPOLATIONS[d.interpolation], box=box)
        if d.flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return pil_to_uint8_tensor(img), d.photometric


def center_box(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float, float]:
    """The region of the original image that 'resize the shorter side to `resize`, centre-crop `crop`' keeps."""
    side = min(width, height) * crop / resize
    return (width - side) / 2, (height - side) / 2, side, side
