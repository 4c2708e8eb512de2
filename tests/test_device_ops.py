import pytest
import torch

from data.device_ops import IMAGENET_MEAN, IMAGENET_STD, BatchNormalizer


def test_normalizer_and_lighting_noise():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (images / 255 - mean) / std
    normalizer = BatchNormalizer(lighting_std=0.1)
    assert torch.allclose(normalizer.eval()(images), expected, atol=1e-5)  # no noise in eval
    g = torch.Generator().manual_seed(3)
    noisy = normalizer.train()(images, g)
    shift = (noisy - expected) * std  # per-image RGB offset, constant over pixels
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-5)
    assert shift.abs().max() > 0
    again = normalizer(images, torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    assert BatchNormalizer(channels_last=True)(images).is_contiguous(memory_format=torch.channels_last)


def _photos():
    """Real photographs when the shared ImageNet sample is beside the repo; the embedded sample set always."""
    from data.sample import ensure_sample_data
    from helpers import SHARED_SAMPLE
    import glob
    import os
    sample = sorted(glob.glob(os.path.join(ensure_sample_data(), "val", "*", "*_000[0-2].JPEG")))
    real = sorted(SHARED_SAMPLE.glob("*.JPEG"))[:30] if SHARED_SAMPLE.is_dir() else []
    return sample, real


@pytest.mark.parametrize("source", ["sample set", "ImageNet photos"])
def test_device_photometric_ops_match_pil_and_colorjitter(source):
    """Brightness, contrast and saturation equal PIL's (what ColorJitter does on PIL images) exactly; the hue
    shift differs by PIL's 8-bit HSV rounding: mean absolute difference below 1 level of 255."""
    import random

    import numpy as np
    import torchvision.transforms.functional as TF
    from PIL import Image

    from data.device_ops import adjust_photometric
    sample, real = _photos()
    paths = sample if source == "sample set" else real
    if not paths:
        pytest.skip("needs ../shared/data/imagenet-sample")
    rng = random.Random(0)
    hue_diffs = []
    for path in paths:
        img = Image.open(path).convert("RGB").resize((96, 96))
        factors = [rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(-0.1, 0.1)]
        reference = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, factors[0]), factors[1]),
                                         factors[2])
        batch = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
        no_hue = adjust_photometric(batch, torch.tensor([[*factors[:3], 0.0]]))[0].permute(1, 2, 0)
        assert torch.equal(no_hue, torch.from_numpy(np.array(reference)))
        with_hue = adjust_photometric(batch, torch.tensor([factors]))[0].permute(1, 2, 0).float()
        expected = torch.from_numpy(np.array(TF.adjust_hue(reference, factors[3]))).float()
        hue_diffs.append((with_hue - expected).abs().mean().item())
    assert sum(hue_diffs) / len(hue_diffs) < 1.0, hue_diffs
    neutral = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(adjust_photometric(neutral, torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)), neutral)


def test_device_hue_shift_matches_hsv():
    import colorsys

    from data.device_ops import shift_hue
    torch.manual_seed(0)
    x, shift = torch.rand(2, 3, 4, 4), torch.tensor([0.1, -0.3])
    y = shift_hue(x, shift)
    for b in range(2):
        h, s, v = colorsys.rgb_to_hsv(*x[b, :, 1, 2].tolist())
        assert y[b, :, 1, 2].tolist() == pytest.approx(colorsys.hsv_to_rgb((h + shift[b].item()) % 1, s, v), abs=1e-5)
