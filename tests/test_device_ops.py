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
    import glob
    import os

    from helpers import SHARED_SAMPLE

    from data.sample import ensure_sample_data
    sample = sorted(glob.glob(os.path.join(ensure_sample_data(), "val", "*", "*_000[0-2].JPEG")))
    real = sorted(SHARED_SAMPLE.glob("*.JPEG"))[:30] if SHARED_SAMPLE.is_dir() else []
    return sample, real


@pytest.mark.parametrize("source", ["sample set", "ImageNet photos"])
def test_device_photometric_ops_match_pil_and_colorjitter(source):
    """PIL's brightness, contrast, saturation and hue (what ColorJitter does on PIL images) in one colour matrix:
    within 2.5 levels of 255 on average without hue and 6 with it (PIL rounds to 8 bits after every step and
    shifts the hue in HSV; measured 1.5 and 3.5 on the ImageNet photographs, 1.5 and 5.1 on the sample set's
    saturated renderings)."""
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
    without_hue, with_hue = [], []
    for path in paths:
        img = Image.open(path).convert("RGB").resize((96, 96))
        factors = [rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(-0.1, 0.1)]
        reference = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, factors[0]), factors[1]),
                                         factors[2])
        batch = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
        for out, expected, bucket in (
                (adjust_photometric(batch, torch.tensor([[*factors[:3], 0.0]])), reference, without_hue),
                (adjust_photometric(batch, torch.tensor([factors])), TF.adjust_hue(reference, factors[3]), with_hue)):
            diff = out[0].permute(1, 2, 0).float() - torch.from_numpy(np.array(expected)).float()
            bucket.append(diff.abs().mean().item())
    assert sum(without_hue) / len(without_hue) < 2.5 and sum(with_hue) / len(with_hue) < 6.0, (without_hue, with_hue)


def test_neutral_factors_change_nothing_and_a_third_turn_of_hue_permutes_the_channels():
    from data.device_ops import adjust_photometric
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(adjust_photometric(images, torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)), images)
    red = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    red[:, 0] = 200
    green = adjust_photometric(red, torch.tensor([[1.0, 1.0, 1.0, 1 / 3]]))
    assert green[0, :, 0, 0].tolist() == [0, 200, 0]
    half = adjust_photometric(images, torch.tensor([[0.5, 1.0, 1.0, 0.0]] * 2))
    assert (half.int() - (images.float() * 0.5).round().int()).abs().max() <= 0
