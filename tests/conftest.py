import random
from pathlib import Path

import pytest
from PIL import Image

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def make_image(path: Path, size=(80, 60), colour=None, mode="RGB", fmt="JPEG", seed=0):
    rng = random.Random(seed)
    colour = colour or tuple(rng.randint(0, 255) for _ in range(3))
    img = Image.new("RGB", size, colour)
    for _ in range(20):  # some structure, so crops and resizes differ
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        img.paste(tuple(rng.randint(0, 255) for _ in range(3)), (x, y, min(size[0], x + 9), min(size[1], y + 9)))
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def make_folder(root: Path, classes=("n01", "n02", "n03"), per_class=4, splits=("train", "val"), size=(80, 60)):
    for split in splits:
        for c, name in enumerate(classes):
            for i in range(per_class):
                make_image(root / split / name / f"{name}_{i}.JPEG", size=size, seed=1000 * splits.index(split) + 100 * c + i)
    return root


@pytest.fixture
def tiny_folder(tmp_path):
    return make_folder(tmp_path / "ds")


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """The real sample set, generated once per test session into a temporary cache."""
    from data.sample import ensure_sample_data
    return ensure_sample_data(tmp_path_factory.mktemp("cache") / "sample")
