"""Multi-crop evaluation views: 1 crop, 10 crops, and the 144 crops of the GoogLeNet paper.

Geometry is computed first (a list of `View`s in the coordinates of the image resized to a given shorter
side), then cut from one decoded image: each image is decoded once for every crop mode and every model input
size asked for (an ensemble may mix 224 and 299 px networks), and resized once per scale. How much smaller a
JPEG may be decoded (draft decoding) depends only on the model sizes, never on the crop modes, so a view is
the same whether it is computed alone or beside others: `crops=all` equals three separate runs.

- 1 crop: shorter side -> `resize`, the centre `size` x `size` crop.
- 10 crops: shorter side -> `resize`, the 4 corner and the centre crops, and their mirrors.
- 144 crops: 4 scales x 3 squares x 6 views x 2 mirrors. Scales: shorter side 256, 288, 320, 352 for a
  224 px model, scaled by size/224 otherwise (342, 384, 427, 470 at 299 px). Squares: left, centre, right
  (top, centre, bottom for portrait images), each `scale` x `scale`. Views: the 4 corner and the centre
  `size` crops of the square, and the whole square resized to `size`.

On a GPU the 10- and 144-crop views are cut on the device (`cut_later`): the loader worker only decodes, the
decoded image is uploaded once, and its views are cut and resized there once for all the models of an
ensemble (cutting 144 views costs ~80 ms per image on a CPU core, and uploading them is 21.7 MB per image at
224 px). The same torch code cuts on either side.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image

from .imaging import UnreadableImage, draft_for_scale, open_image, pil_to_uint8_tensor, to_rgb
from .transforms import center_box

PAPER_SCALES = (256, 288, 320, 352)
CROP_MODES = (1, 10, 144)
# 10- and 144-crop views are cut from the whole image resized to a shorter side of 256-470 px: a 60000 x 1 image
# would become gigabytes. Images more elongated than this are reported unreadable for those modes.
MAX_ASPECT = 20


@dataclass(frozen=True)
class Geometry:
    """A model's input: crop `size`, and the shorter side `resize` of its 1- and 10-crop views."""

    size: int
    resize: int

    @property
    def largest_side(self) -> int:
        """The largest shorter side any of its views is cut from (the 144-crop protocol's largest scale)."""
        return max(self.resize, *paper_scales(self.size))


class Decoded(NamedTuple):
    """A decoded image whose 10- and 144-crop views are cut later, on the device (`cut_on_device`). A named
    tuple, so that the DataLoader pins its image for an asynchronous upload."""

    image: torch.Tensor           # CHW uint8, possibly decoded smaller than `original` (JPEG draft)
    original: tuple[int, int]     # (width, height) of the file: the views' coordinates


DECODED = "decoded"  # the key of an `EvalViews` output that holds a `Decoded` instead of cut views


@dataclass(frozen=True)
class View:
    scale: int              # the image is first resized so that its shorter side is `scale`
    left: int               # box in that resized image
    top: int
    side: int               # square box side; resized to the output size when different from it
    flip: bool = False


def resized_shape(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter`, keeping the aspect ratio."""
    if width <= height:
        return shorter, max(shorter, round(height * shorter / width))
    return max(shorter, round(width * shorter / height)), shorter


def paper_scales(size: int) -> tuple[int, ...]:
    return tuple(round(s * size / 224) for s in PAPER_SCALES)


def _five(left: int, top: int, width: int, height: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of the 4 corner crops and the centre crop of a region."""
    return [(left, top), (left + width - size, top), (left, top + height - size),
            (left + width - size, top + height - size),
            (left + round((width - size) / 2), top + round((height - size) / 2))]


def views(width: int, height: int, crops: int, size: int, resize: int) -> list[View]:
    """The views of one `width` x `height` image for `crops` in (1, 10, 144)."""
    if crops == 1:
        w, h = resized_shape(width, height, resize)
        return [View(resize, round((w - size) / 2), round((h - size) / 2), size)]
    if crops == 10:
        w, h = resized_shape(width, height, resize)
        base = [View(resize, x, y, size) for x, y in _five(0, 0, w, h, size)]
        return base + [View(v.scale, v.left, v.top, v.side, flip=True) for v in base]
    if crops == 144:
        out = []
        for scale in paper_scales(size):
            w, h = resized_shape(width, height, scale)
            long_side = max(w, h)
            for offset in (0, round((long_side - scale) / 2), long_side - scale):
                sx, sy = (offset, 0) if w >= h else (0, offset)
                square = [View(scale, x, y, size) for x, y in _five(sx, sy, scale, scale, size)]
                square.append(View(scale, sx, sy, scale))
                out += square + [View(v.scale, v.left, v.top, v.side, flip=True) for v in square]
        return out
    raise ValueError(f"crops must be one of {CROP_MODES}, got {crops}")


def resize_uint8(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resize of a CHW uint8 image (antialiased when shrinking)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    x = F.interpolate(image.unsqueeze(0).float(), size=(height, width), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)[0]


def cut_views(image: torch.Tensor, view_list: list[View], size: int, original: tuple[int, int] | None = None):
    """Cut every view from a CHW uint8 image: an (n, 3, size, size) uint8 tensor.

    `original` is the (width, height) the views were computed for, when the image was decoded smaller.
    """
    width, height = original or (image.shape[-1], image.shape[-2])
    resized: dict[int, torch.Tensor] = {}
    out = torch.empty((len(view_list), 3, size, size), dtype=torch.uint8, device=image.device)
    for i, v in enumerate(view_list):
        if v.scale not in resized:
            resized[v.scale] = resize_uint8(image, *resized_shape(width, height, v.scale))
        crop = resize_uint8(resized[v.scale][:, v.top:v.top + v.side, v.left:v.left + v.side], size, size)
        out[i] = crop.flip(-1) if v.flip else crop
    return out


def cut_on_device(decoded: list[Decoded], geometry: Geometry, crops: int) -> torch.Tensor:
    """(images, crops, 3, size, size) uint8 views of images decoded by `EvalViews(cut_later=True)`, cut on the
    device their images were uploaded to."""
    return torch.stack([cut_views(d.image, views(*d.original, crops, geometry.size, geometry.resize), geometry.size,
                                  d.original) for d in decoded])


def centre_view(img: Image.Image, original: tuple[int, int], drafted: tuple[float, float], g: Geometry):
    """The 1-crop view: shorter side -> resize, centre crop, done as one bilinear resample of the kept region."""
    left, top, w, h = center_box(*original, g.resize, g.size)
    sx, sy = drafted
    box = (left / sx, top / sy, (left + w) / sx, (top + h) / sy)
    return pil_to_uint8_tensor(img.resize((g.size, g.size), Image.Resampling.BILINEAR, box=box))


class EvalViews:
    """File path -> {(geometry, crops): (n, 3, size, size) uint8} for every geometry and crop mode, from one
    decode. An unreadable file raises `imaging.UnreadableImage`."""

    def __init__(self, geometries: list[Geometry], modes: tuple[int, ...], fast_decode: bool = True,
                 cut_later: bool = False):
        bad = [m for m in modes if m not in CROP_MODES]
        if bad:
            raise ValueError(f"crops must be in {CROP_MODES}, got {bad}")
        self.geometries, self.modes, self.fast_decode = list(geometries), tuple(modes), fast_decode
        self.cut_later = cut_later  # 10 and 144 crops: return the decoded image (DECODED), cut on the device
        self.side = max(g.largest_side for g in self.geometries)

    def __call__(self, path, rng: random.Random | None = None) -> dict[tuple[Geometry, int], torch.Tensor]:
        img = open_image(path)
        original = img.size
        if any(mode != 1 for mode in self.modes) and max(original) > MAX_ASPECT * min(original):
            raise UnreadableImage(f"{path}: its aspect ratio ({original[0]} x {original[1]}) is beyond {MAX_ASPECT}:1, "
                                  "too elongated for 10- and 144-crop views (crop it, or use crops=1)")
        drafted = draft_for_scale(img, min(original) / self.side) if self.fast_decode else (1.0, 1.0)
        img = to_rgb(img)
        tensor = None
        out = {}
        for g in self.geometries:
            for mode in self.modes:
                if mode == 1:
                    out[(g, 1)] = centre_view(img, original, drafted, g).unsqueeze(0)
                    continue
                if tensor is None:
                    tensor = pil_to_uint8_tensor(img)
                if self.cut_later:
                    out[DECODED] = Decoded(tensor, original)
                else:
                    out[(g, mode)] = cut_views(tensor, views(*original, mode, g.size, g.resize), g.size, original)
        return out


@dataclass
class EvalTransform:
    """The trainer's validation view: the 1-crop view of evaluation, so that their numbers agree."""

    size: int = 224
    resize: int = 256
    fast_decode: bool = True

    def __call__(self, path, rng: random.Random | None = None) -> torch.Tensor:
        g = Geometry(self.size, self.resize)
        return EvalViews([g], (1,), self.fast_decode)(path)[(g, 1)][0]
