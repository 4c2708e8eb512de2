import random

import pytest
import torch

from data.transforms import PhotometricDistortion, TrainTransform, sample_crop_box
from helpers import make_image, photo, tiny_overrides


def test_device_decode_matches_the_cpu_path(tmp_path):
    from data.device_decode import EncodedBatch, EncodedTrainTransform
    path = photo(tmp_path / "big.JPEG")
    cpu, encoded = TrainTransform(size=64, fast_decode=False), EncodedTrainTransform(size=64)
    for i in range(8):
        expected = cpu(path, random.Random(i)).float()
        data, params, name = encoded(path, random.Random(i))
        got = EncodedBatch([data], params[None], [name], 64).decode("cpu")[0].float()
        assert (got - expected).abs().mean() < 4.0  # same crop box and flip, small resampling differences


def test_device_decode_handles_odd_and_corrupt_files(tmp_path, tiny_folder):
    from data.device_decode import EncodedBatch, EncodedTrainTransform, collate_encoded
    good = photo(tmp_path / "good.JPEG", size=(120, 90))
    cmyk = make_image(tmp_path / "cmyk.JPEG", mode="CMYK")
    png = make_image(tmp_path / "png.JPEG", fmt="PNG")
    broken = tmp_path / "broken.JPEG"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # the header parses, the image data stops half way
    t = EncodedTrainTransform(size=32, photometric=PhotometricDistortion(0.4, 0.4, 0.4, 0.0))
    samples = [(t(p, random.Random(k)), 0, "") for k, p in enumerate([good, cmyk, png, broken])]
    images, targets, skipped = collate_encoded(32)(samples)
    assert isinstance(images, EncodedBatch) and targets.tolist() == [0, 0, 0, 0]
    out = images.decode("cpu")
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
    assert images.failed == [str(broken)]
    # training end to end with device decoding (the CPU stands in for the GPU)
    from googlenet.config import compose_config
    from googlenet.trainer import train
    cfg = compose_config("train", tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=1", "data.decode=device",
                                                 "data.augment.brightness=0.3"))
    assert train(cfg).exit_code == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_device_hue_shift_matches_hsv_and_interpolation_draws_match_the_cpu_path(tmp_path):
    import colorsys

    from data.device_decode import INTERPOLATION_MODES, EncodedBatch, EncodedTrainTransform, shift_hue
    from data.transforms import INTERPOLATIONS
    torch.manual_seed(0)
    x, shift = torch.rand(2, 3, 4, 4), torch.tensor([0.1, -0.3])
    y = shift_hue(x, shift)
    for b in range(2):
        h, s, v = colorsys.rgb_to_hsv(*x[b, :, 1, 2].tolist())
        assert y[b, :, 1, 2].tolist() == pytest.approx(colorsys.hsv_to_rgb((h + shift[b].item()) % 1, s, v), abs=1e-5)
    assert list(INTERPOLATIONS) == list(INTERPOLATION_MODES)
    path = photo(tmp_path / "big.JPEG", size=(300, 200))
    encoded = EncodedTrainTransform(size=48, random_interpolation=True,
                                    photometric=PhotometricDistortion(0.0, 0.0, 0.4, 0.1))
    modes = set()
    for i in range(12):
        rng = random.Random(i)
        sample_crop_box(300, 200, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        expected_mode = list(INTERPOLATIONS).index(rng.choice(list(INTERPOLATIONS)))  # what TrainTransform draws
        data, params, name = encoded(path, random.Random(i))
        assert int(params[9]) == expected_mode and -0.1 <= params[8] <= 0.1
        modes.add(expected_mode)
        out = EncodedBatch([data], params[None], [name], 48).decode("cpu")
        assert out.shape == (1, 3, 48, 48)
    assert len(modes) > 1
