"""Decoding image files into RGB, whatever the file holds (grayscale, CMYK, palette, alpha, PNG as .JPEG)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from PIL import Image

# Truncated files must fail loudly so they are skipped and reported, never silently half-grey.
Image.LOAD_TRUNCATED_IMAGES = False
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UnreadableImage(Exception):
    """The file is not a decodable image (zero bytes, truncated, not an image at all)."""


def open_image(path) -> Image.Image:
    """Open lazily: the header is read, the pixels are not (so `draft` can still pick a smaller decode)."""
    try:
        img = Image.open(path)
        img.size  # noqa: B018  (header parsed)
        return img
    except Exception as e:
        raise UnreadableImage(f"{path}: {type(e).__name__}: {e}") from None


def draft_for_scale(img: Image.Image, reduce: float) -> tuple[float, float]:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 size when the image will be shrunk at least that much.

    Returns the factors (x, y) by which the decoded image is smaller than the original ((1, 1) if not).
    """
    if img.format != "JPEG" or reduce < 2:
        return 1.0, 1.0
    width, height = img.size
    img.draft(img.mode, (math.ceil(width / reduce), math.ceil(height / reduce)))
    return width / img.size[0], height / img.size[1]


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode and convert to 8-bit RGB; transparent pixels are composited over white."""
    try:
        img.load()
        if img.mode == "RGB":
            return img
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if img.mode in ("I;16", "I;16B", "I", "F"):
            array = np.asarray(img, dtype=np.float32)
            array = 255.0 * (array - array.min()) / max(float(array.max() - array.min()), 1e-6)
            img = Image.fromarray(array.astype(np.uint8))
        return img.convert("RGB")
    except Exception as e:
        raise UnreadableImage(f"{getattr(img, 'filename', '?')}: {type(e).__name__}: {e}") from None


def load_rgb(path) -> Image.Image:
    return to_rgb(open_image(path))


def pil_to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """HWC uint8 PIL image -> CHW uint8 tensor (normalisation happens later, on the device, in batches)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
