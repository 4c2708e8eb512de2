"""`data.decode=device`: JPEGs are decoded on the training device with `torchvision.io.decode_jpeg`.

Loader workers only read file bytes and draw each sample's crop box, flip and photometric factors (from the
same per-sample random stream as the CPU path, so the crop geometry is identical). The main process decodes
the batch on the device (nvJPEG on CUDA), cuts and resizes the crops there and applies brightness, contrast
and saturation as batched tensor ops. Files nvJPEG cannot take (PNG under a .JPEG name, CMYK) are decoded on
the CPU by the worker; a file that fails to decode on the device is replaced by another image of the batch
and reported like any unreadable file. Brightness, contrast, saturation and hue are applied in that fixed
order (the CPU path shuffles the order per image).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from .imaging import open_image, pil_to_uint8_tensor, to_rgb
from .transforms import INTERPOLATIONS, TrainTransform

# Per-sample parameters, one row each: left, top, width, height, flip, brightness, contrast, saturation,
# hue shift, interpolation (index into INTERPOLATION_MODES), pre-decoded (1 when the worker already cut the
# crop because nvJPEG cannot read the file).
INTERPOLATION_MODES = tuple(INTERPOLATIONS)  # bilinear, area, nearest, bicubic: also F.interpolate's names


class EncodedTrainTransform(TrainTransform):
    """TrainTransform's random choices (the same `draw`), but the worker returns file bytes, not pixels."""

    def __call__(self, path, rng: random.Random):
        img = open_image(path)  # the header only
        d = self.draw(*img.size, rng)
        left, top, w, h = d.box
        mode = INTERPOLATION_MODES.index(d.interpolation)
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
            return data, torch.tensor([left, top, w, h, d.flip, *d.photometric, mode, 0.0]), str(path)
        # nvJPEG cannot decode this file: cut the crop here, the device only applies the photometric factors
        crop = to_rgb(img).resize((self.size, self.size), INTERPOLATIONS[d.interpolation],
                                  box=(left, top, left + w, top + h))
        if d.flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return (pil_to_uint8_tensor(crop),
                torch.tensor([0, 0, self.size, self.size, 0, *d.photometric, mode, 1.0]), str(path))


class EncodedBatch:
    """A batch of encoded images with their crop parameters; `decode(device)` gives uint8 (B, 3, S, S)."""

    def __init__(self, data: list[torch.Tensor], params: torch.Tensor, paths: list[str], size: int):
        self.data, self.params, self.paths, self.size = data, params, paths, size
        self.failed: list[str] = []

    def __len__(self) -> int:
        return len(self.data)

    def pin_memory(self) -> "EncodedBatch":
        self.data = [d.pin_memory() for d in self.data]
        return self

    def _decode_all(self, indices: list[int], device) -> list[torch.Tensor | None]:
        jpegs = [self.data[i] for i in indices]
        try:
            return list(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the batched call: retry one by one
            out = []
            for jpeg in jpegs:
                try:
                    out.append(decode_jpeg(jpeg, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out

    def decode(self, device) -> torch.Tensor:
        device = torch.device(device)
        size, params = self.size, self.params.tolist()
        out = torch.empty((len(self), 3, size, size), dtype=torch.uint8, device=device)
        done = [False] * len(self)
        jpeg_indices = [i for i, p in enumerate(params) if not p[-1]]
        for i, image in zip(jpeg_indices, self._decode_all(jpeg_indices, device)):
            if image is None:
                self.failed.append(self.paths[i])
                continue
            left, top, w, h, flip = params[i][:5]
            mode = INTERPOLATION_MODES[int(params[i][9])]
            x0, y0 = int(left), int(top)
            crop = image[:, y0:y0 + max(1, round(h)), x0:x0 + max(1, round(w))].unsqueeze(0).float()
            if mode in ("bilinear", "bicubic"):
                crop = F.interpolate(crop, size=(size, size), mode=mode, antialias=True, align_corners=False)[0]
            else:
                crop = F.interpolate(crop, size=(size, size), mode=mode)[0]
            crop = crop.flip(-1) if flip else crop
            out[i] = crop.round_().clamp_(0, 255).to(torch.uint8)
            done[i] = True
        for i, p in enumerate(params):
            if p[-1]:
                out[i] = self.data[i].to(device, non_blocking=True)
                done[i] = True
        good = [i for i, ok in enumerate(done) if ok]
        if not good:
            raise RuntimeError(f"no image of the batch could be decoded: {', '.join(self.paths)}")
        for k, i in enumerate(i for i, ok in enumerate(done) if not ok):
            out[i] = out[good[k % len(good)]]  # stand in for the unreadable file
        return photometric(out, self.params.to(device, non_blocking=True))


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue (in that order) with per-image factors, as batched ops."""
    factors, hue = params[:, 5:8].to(torch.float32), params[:, 8].to(torch.float32)
    if bool((factors == 1).all()) and bool((hue == 0).all()):
        return images
    x = images.float()
    b, c, s = (factors[:, k].view(-1, 1, 1, 1) for k in range(3))
    x = (x * b).clamp_(0, 255)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + c * (x - mean)).clamp_(0, 255)
    grey = _grey(x)
    x = (grey + s * (x - grey)).clamp_(0, 255)
    if bool((hue != 0).any()):
        x = shift_hue(x / 255, hue) * 255
    return x.round_().clamp_(0, 255).to(torch.uint8)


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


def collate_encoded(size: int):
    def collate(batch):
        samples, targets, skipped = zip(*batch)
        data, params, paths = zip(*samples)
        return (EncodedBatch(list(data), torch.stack(params), list(paths), size), torch.tensor(targets),
                [p for replaced in skipped for p in replaced])
    return collate
