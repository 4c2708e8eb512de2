import random

import pytest
import torch
from helpers import SHARED_SAMPLE, make_image
from PIL import Image

from data.imaging import load_rgb
from data.multicrop import EvalTransform
from data.transforms import TrainTransform, sample_crop_box


def test_crop_statistics_cover_the_papers_ranges():
    rng = random.Random(0)
    areas, aspects = [], []
    for _ in range(4000):
        left, top, w, h = sample_crop_box(500, 375, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= left and 0 <= top and left + w <= 500 + 1e-6 and top + h <= 375 + 1e-6
        areas.append(w * h / (500 * 375))
        aspects.append(w / h)
    assert min(areas) < 0.1 and max(areas) > 0.95 and min(areas) >= 0.08 - 1e-9
    assert min(aspects) < 0.78 and max(aspects) > 1.3
    assert min(aspects) >= 3 / 4 - 1e-6 and max(aspects) <= 4 / 3 + 1e-6
    # log-uniform aspect ratio: about half the draws are wider than tall
    assert 0.4 < sum(a > 1 for a in aspects) / len(aspects) < 0.6


def test_train_transform_output_size_is_exact(tmp_path):
    path = make_image(tmp_path / "a.JPEG", size=(333, 211))
    t = TrainTransform(size=57, random_interpolation=True)
    for i in range(20):
        image, factors = t(path, random.Random(i))
        assert image.shape == (3, 57, 57) and factors == (1.0, 1.0, 1.0, 0.0)


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("RGB", "PNG"), ("LA", "PNG")])
def test_odd_image_modes_load_as_rgb(tmp_path, mode, fmt):
    path = make_image(tmp_path / "x.JPEG", mode=mode, fmt=fmt)  # PNG data under a .JPEG name too
    assert load_rgb(path).mode == "RGB"
    out, _ = TrainTransform(size=24)(path, random.Random(0))
    assert out.shape == (3, 24, 24)


def test_fast_decode_matches_plain_decode(tmp_path):
    # a large photo-like JPEG, cropped and shrunk a lot: draft decoding must not move the crop
    torch.manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 32), size=(600, 800), mode="bicubic")
    img = Image.fromarray((base[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy())
    path = tmp_path / "big.JPEG"
    img.save(path, quality=95)
    diffs = []
    for i in range(10):
        fast = TrainTransform(size=64, fast_decode=True)(path, random.Random(i))[0].float()
        slow = TrainTransform(size=64, fast_decode=False)(path, random.Random(i))[0].float()
        diffs.append((fast - slow).abs().mean().item())
        assert abs(fast.mean().item() - slow.mean().item()) < 2.0
    assert max(diffs) < 4.0  # of 255: same geometry, small resampling differences
    fast = EvalTransform(64, 73, fast_decode=True)(path).float()
    slow = EvalTransform(64, 73, fast_decode=False)(path).float()
    assert (fast - slow).abs().mean() < 4.0


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason="needs ../shared/data/imagenet-sample")
def test_fast_decode_on_real_photographs():
    paths = sorted(SHARED_SAMPLE.glob("*.JPEG"))[:40]
    diffs = []
    for i, path in enumerate(paths):
        fast = TrainTransform(size=224, fast_decode=True)(path, random.Random(i))[0].float()
        slow = TrainTransform(size=224, fast_decode=False)(path, random.Random(i))[0].float()
        diffs.append((fast - slow).abs().mean().item())
    assert sum(diffs) / len(diffs) < 6.0
