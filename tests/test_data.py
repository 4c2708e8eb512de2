import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import SHARED_SAMPLE, make_folder, make_image
from data.classes import class_names, imagenet_classes
from data.datasets import ImageFolderDataset
from data.imaging import UnreadableImage, load_rgb
from data.loaders import build_data
from data.samplers import EpochSampler
from data.transforms import EvalTransform, PhotometricDistortion, TrainTransform, sample_crop_box
from googlenet.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def data_cfg(root, **overrides):
    cfg = OmegaConf.load(ROOT / "configs" / "data" / "imagenet.yaml")
    cfg.root, cfg.crop_size, cfg.batch_size, cfg.workers, cfg.num_classes = str(root), 32, 2, 0, 3
    cfg.eval_resize = 36
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_imagenet_class_list_is_sorted_with_names():
    classes = imagenet_classes()
    assert len(classes) == 1000 and [w for w, _ in classes] == sorted(w for w, _ in classes)
    assert classes[0] == ("n01440764", "tench")
    assert class_names(["n01443537", "mystery"]) == ["goldfish", "mystery"]


def test_class_order_labels_and_names(tmp_path):
    root = make_folder(tmp_path / "ds", classes=("n01443537", "n01440764", "zebra_x"), per_class=2)
    ds = ImageFolderDataset(root, "train", EvalTransform(32, 36))
    assert ds.classes == ["n01440764", "n01443537", "zebra_x"]
    assert [Path(p).parent.name for p, _ in ds.samples] == ["n01440764"] * 2 + ["n01443537"] * 2 + ["zebra_x"] * 2
    assert ds.targets == [0, 0, 1, 1, 2, 2]
    assert class_names(ds.classes) == ["tench", "goldfish", "zebra_x"]
    image, target, skipped = ds[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and target == 1 and skipped == ""


def test_missing_root_split_and_empty_class_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; set data.root"):
        ImageFolderDataset(tmp_path / "nowhere", "train", EvalTransform())
    root = make_folder(tmp_path / "ds", splits=("train",))
    with pytest.raises(UserError, match=r"split .*val does not exist"):
        ImageFolderDataset(root, "val", EvalTransform())
    (root / "train" / "n04").mkdir()
    with pytest.raises(UserError, match=r"n04 has no images"):
        ImageFolderDataset(root, "train", EvalTransform())


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
        assert t(path, random.Random(i)).shape == (3, 57, 57)


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("RGB", "PNG"), ("LA", "PNG")])
def test_odd_image_modes_load_as_rgb(tmp_path, mode, fmt):
    path = make_image(tmp_path / "x.JPEG", mode=mode, fmt=fmt)  # PNG data under a .JPEG name too
    assert load_rgb(path).mode == "RGB"
    out = TrainTransform(size=24)(path, random.Random(0))
    assert out.shape == (3, 24, 24)


def test_corrupt_files_are_skipped_reported_and_every_batch_arrives(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=3)
    bad_zero = root / "train" / "n02" / "zero.JPEG"
    bad_zero.write_bytes(b"")
    good = (root / "train" / "n01" / "n01_0.JPEG").read_bytes()
    bad_trunc = root / "train" / "n03" / "truncated.JPEG"
    bad_trunc.write_bytes(good[: len(good) // 2])
    (root / "train" / "n01" / "notes.JPEG").write_text("not an image")
    with pytest.raises(UnreadableImage):
        load_rgb(bad_trunc)
    bundle = build_data(data_cfg(root, batch_size=3, workers=2), seed=0)
    bundle.train.set_epoch(0)
    batches = list(bundle.train)
    assert len(batches) == len(bundle.train) == 12 // 3
    skipped = {p for _, _, names in batches for joined in names for p in joined.split("\n") if p}
    assert skipped == {str(bad_zero), str(bad_trunc), str(root / "train" / "n01" / "notes.JPEG")}
    assert all(images.shape == (3, 3, 32, 32) for images, _, _ in batches)


def test_same_seed_same_batches_and_epochs_differ(tiny_folder):
    def batches(seed, epoch, workers):
        bundle = build_data(data_cfg(tiny_folder, workers=workers, **{"augment.hue": 0.1}), seed=seed)
        bundle.train.set_epoch(epoch)
        return [(x.clone(), y.clone()) for x, y, _ in bundle.train]
    a, b = batches(1, 0, 0), batches(1, 0, 2)  # worker count does not change what is drawn
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    c = batches(1, 1, 0)
    assert not all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, c))


def test_ranks_see_disjoint_samples_and_validation_counts_each_image_once():
    train = [EpochSampler(10, seed=3, rank=r, world_size=2, pad=True) for r in range(2)]
    for s in train:
        s.set_epoch(5)
    a, b = ({i for i, _ in s} for s in train)
    assert not a & b and len(a) == len(b) == 5 and a | b == set(range(10))
    val = [EpochSampler(7, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    seen = sorted(i for s in val for i, _ in s)
    assert seen == list(range(7)) and sum(len(s) for s in val) == 7
    resumed = EpochSampler(10, seed=3, rank=0, world_size=2)
    resumed.set_epoch(5, start=2)
    assert list(resumed) == list(train[0])[2:]


def test_fast_decode_matches_plain_decode(tmp_path):
    # a large photo-like JPEG, cropped and shrunk a lot: draft decoding must not move the crop
    torch.manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 32), size=(600, 800), mode="bicubic")
    img = Image.fromarray((base[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy())
    path = tmp_path / "big.JPEG"
    img.save(path, quality=95)
    diffs = []
    for i in range(10):
        fast = TrainTransform(size=64, fast_decode=True)(path, random.Random(i)).float()
        slow = TrainTransform(size=64, fast_decode=False)(path, random.Random(i)).float()
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
        fast = TrainTransform(size=224, fast_decode=True)(path, random.Random(i)).float()
        slow = TrainTransform(size=224, fast_decode=False)(path, random.Random(i)).float()
        diffs.append((fast - slow).abs().mean().item())
    assert sum(diffs) / len(diffs) < 6.0


def _tar_bytes(files: dict[str, bytes], path: Path):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            src = path.parent / ("_" + Path(name).name)
            src.write_bytes(data)
            tar.add(src, arcname=name)
            src.unlink()
    return path


def test_prepare_imagenet_on_a_miniature_download(tmp_path):
    src = tmp_path / "downloads"
    src.mkdir()
    jpeg = make_image(tmp_path / "img.JPEG").read_bytes()
    wnids = ["n01440764", "n01443537"]
    for w in wnids:
        _tar_bytes({f"{w}_{i}.JPEG": jpeg for i in range(3)}, src / f"{w}.tar")
    _tar_bytes({f"{w}.tar": (src / f"{w}.tar").read_bytes() for w in wnids}, src / "train.tar")
    val_names = [f"ILSVRC2012_val_{i:08d}" for i in range(1, 5)]
    _tar_bytes({f"{n}.JPEG": jpeg for n in val_names}, src / "val.tar")
    (src / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"{n},{wnids[i % 2]} 1 2 3 4\n" for i, n in enumerate(val_names)))
    out = tmp_path / "imagenet"
    cmd = [sys.executable, str(ROOT / "scripts" / "prepare_imagenet.py"), "--out", str(out), "--quiet",
           "--train-tar", str(src / "train.tar"), "--val-tar", str(src / "val.tar"),
           "--val-labels", str(src / "LOC_val_solution.csv")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "train: 6 images" in first.stdout and "val: 4 images" in first.stdout
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert [str(f) for f in files] == sorted(
        [f"train/{w}/{w}_{i}.JPEG" for w in wnids for i in range(3)]
        + [f"val/{wnids[i % 2]}/{n}.JPEG" for i, n in enumerate(val_names)])
    stamps = {f: (out / f).stat().st_mtime_ns for f in files}
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0
    assert {f: (out / f).stat().st_mtime_ns for f in files} == stamps
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    assert (src / "train.tar").is_file() and (src / "val.tar").is_file()  # sources kept
    ds = ImageFolderDataset(out, "val", EvalTransform(32, 36))
    assert ds.classes == wnids and len(ds) == 4
    # a wrong input fails with one line
    bad = subprocess.run(cmd[:5] + ["--train-tar", str(src / "val.tar")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not per-class tars" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_sample_set_is_deterministic_and_learnable_shaped(tmp_path, sample_root):
    from data.sample import CLASSES, DEFAULT_COUNTS, generate
    ds = ImageFolderDataset(sample_root, "train", EvalTransform(32, 36))
    assert len(ds.classes) == len(CLASSES) == 10 and len(ds) == 10 * DEFAULT_COUNTS["train"]
    sizes = {Image.open(p).size for p, _ in ds.samples[:50]}
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    again = generate(tmp_path / "again", counts={"train": 2})
    first = sorted((sample_root / "train").rglob("*_000[01].JPEG"))
    second = sorted((again / "train").rglob("*.JPEG"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def _photo(path, size=(800, 600)):
    torch.manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 32), size=(size[1], size[0]), mode="bicubic")
    Image.fromarray((base[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()).save(path, quality=95)
    return path


def test_device_decode_matches_the_cpu_path(tmp_path):
    from data.device_decode import EncodedBatch, EncodedTrainTransform
    path = _photo(tmp_path / "big.JPEG")
    cpu, encoded = TrainTransform(size=64, fast_decode=False), EncodedTrainTransform(size=64)
    for i in range(8):
        expected = cpu(path, random.Random(i)).float()
        data, params, name = encoded(path, random.Random(i))
        got = EncodedBatch([data], params[None], [name], 64).decode("cpu")[0].float()
        assert (got - expected).abs().mean() < 4.0  # same crop box and flip, small resampling differences


def test_device_decode_handles_odd_and_corrupt_files(tmp_path, tiny_folder):
    from data.device_decode import EncodedBatch, EncodedTrainTransform, collate_encoded
    good = _photo(tmp_path / "good.JPEG", size=(120, 90))
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
    from helpers import tiny_overrides
    cfg = compose_config("train", tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=1", "data.decode=device",
                                                 "data.augment.brightness=0.3"))
    assert train(cfg) == 0
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
    path = _photo(tmp_path / "big.JPEG", size=(300, 200))
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
