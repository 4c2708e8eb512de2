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
