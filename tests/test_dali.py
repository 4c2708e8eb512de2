"""data.loader=dali on the CPU: the same DALI pipeline a GPU runs, with `cpu` decoding (requirements-dali.txt)."""
import pytest
import torch
from helpers import ROOT, installed, make_folder, tiny_overrides
from omegaconf import OmegaConf

from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.trainer import train

pytestmark = pytest.mark.skipif(not installed("nvidia.dali"),
                                reason="needs NVIDIA DALI (pip install -r requirements-dali.txt)")


def data_cfg(root=None, **overrides):
    cfg = OmegaConf.load(ROOT / "configs" / "data" / "imagenet.yaml")
    cfg.root, cfg.crop_size, cfg.batch_size, cfg.workers, cfg.num_classes = str(root), 32, 4, 1, None
    cfg.eval_resize, cfg.loader = 36, "dali"
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def indexed_loader(files, train, rank=0, world_size=1, unreadable=(), **overrides):
    """A loader whose targets are the sample indices, so batches say which images they hold."""
    from data.dali import DaliLoader
    return DaliLoader(files, list(range(len(files))), train=train, data_cfg=data_cfg(**overrides), seed=7, rank=rank,
                      world_size=world_size, device="cpu", unreadable=set(unreadable))


def seen(loader, epoch=0, start=0):
    loader.set_epoch(epoch, start)
    return [t for batch in loader for t in batch[1].tolist()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("dali") / "ds", per_class=6, size=(120, 90))
    return root, sorted(str(p) for p in (root / "train").rglob("*.JPEG"))


def test_dali_crop_windows_respect_the_area_and_aspect_ranges(photos):
    from data.dali import crop_windows
    _, files = photos
    windows = crop_windows(files * 8, data_cfg(**{"augment.scale": [0.08, 1.0]}))  # 144 draws
    area, aspect = windows[:, 0], windows[:, 1]
    pixel = 1 / 90  # a window is a whole number of pixels
    assert area.min() >= 0.08 - 2 * pixel and area.max() <= 1.0
    assert aspect.min() >= 0.75 - 2 * pixel and aspect.max() <= 4 / 3 + 2 * pixel
    assert area.min() < 0.2 and area.max() > 0.7 and aspect.min() < 0.85 and aspect.max() > 1.2  # the whole range
    narrow = crop_windows(files * 4, data_cfg(**{"augment.scale": [0.5, 0.6], "augment.ratio": [1.0, 1.0]}))
    assert narrow[:, 0].min() >= 0.5 - 2 * pixel and narrow[:, 0].max() <= 0.6 + 2 * pixel
    assert abs(narrow[:, 1] - 1).max() < 2 * pixel


def test_epochs_are_seeded_and_a_resume_continues_with_the_unseen_images(photos):
    _, files = photos
    loader = indexed_loader(files, train=True)
    first = seen(loader, epoch=1)
    assert len(first) == len(files) // 4 * 4 and len(set(first)) == len(first)
    assert seen(indexed_loader(files, train=True), epoch=1) == first  # same seed and epoch: same order
    images = [b[0].clone() for b in (loader.set_epoch(1), loader)[1]]
    again = [b[0] for b in (loader.set_epoch(1), loader)[1]]
    assert all(torch.equal(a, b) for a, b in zip(images, again))  # and the same crops: an exact epoch resume
    assert seen(loader, epoch=2) != first
    assert seen(indexed_loader(files, train=True), epoch=1, start=8) == first[8:]  # mid-epoch: the rest, once


def test_ranks_share_out_training_and_count_every_validation_image_once(photos):
    _, files = photos
    val = [seen(indexed_loader(files, train=False, rank=r, world_size=2)) for r in range(2)]
    assert sorted(val[0] + val[1]) == list(range(len(files))) and not set(val[0]) & set(val[1])
    train_shards = [seen(indexed_loader(files, train=True, rank=r, world_size=2)) for r in range(2)]
    assert not set(train_shards[0]) & set(train_shards[1]) and len(train_shards[0]) == len(train_shards[1])


def test_unreadable_files_are_replaced_in_training_and_skipped_in_validation(tmp_path, monkeypatch):
    from data import dali
    root = make_folder(tmp_path / "ds", per_class=4)
    broken = root / "train" / "n02" / "broken.JPEG"
    broken.write_bytes(b"")
    late = root / "val" / "n01" / "late.JPEG"
    late.write_bytes((root / "val" / "n01" / "n01_0.JPEG").read_bytes()[:300])  # a header, then nothing
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert dali.unreadable_files(root / "train", [str(broken), str(root / "train" / "n01" / "n01_0.JPEG")]) == \
        {str(broken)}
    result = train(compose_config("train", tiny_overrides(root, tmp_path / "run", "trainer.epochs=1",
                                                          "data.loader=dali", "data.batch_size=4")))
    assert result.exit_code == 0
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"replaced 1 unreadable image(s): {broken}" in log and f"skipped 1 unreadable image(s): {late}" in log
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["metrics"]["val_images"] == 12
    # a file the scan lets through is found when it fails to decode, replaced, and the epoch goes on
    monkeypatch.setattr(dali, "quick_check", lambda path: True)
    files = sorted(str(p) for p in (root / "train").rglob("*.JPEG"))
    loader = indexed_loader(files, train=True, **{"root": root})
    loader.unreadable = set()
    corrupted = root / "train" / "n03" / "n03_1.JPEG"  # its header overwritten after the scan: DALI's shape peek fails
    corrupted.write_bytes(b"\x00" * 600)
    batches = list((loader.set_epoch(0), loader)[1])
    assert sum(len(b[1]) for b in batches) == len(files) // 4 * 4
    assert sorted(p for b in batches for p in b[2]) == sorted([str(broken), str(corrupted)])
    assert {str(broken), str(corrupted)} <= loader.unreadable


def test_dali_fed_training_on_the_sample_set(tmp_path, sample_root):
    result = train(compose_config("train", ["data=sample", f"data.root={sample_root}", "data.loader=dali",
                                            "data.crop_size=64", "data.eval_resize=73", "trainer.epochs=1",
                                            "trainer.limit_train_batches=3", "trainer.progress=false",
                                            "data.augment.brightness=0.4", "data.augment.hue=0.1",
                                            "data.augment.random_interpolation=true", f"hydra.run.dir={tmp_path}"]))
    assert result.exit_code == 0
    metrics = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["metrics"]
    assert metrics["val_images"] == 300 and 0 <= metrics["val_top1"] <= 100


def test_validation_images_decode_as_evaluate_py_decodes_them(tmp_path):
    # DALI rotates by EXIF orientation by default, PIL does not: a run's validation on DALI would then see
    # other pixels than evaluate.py. Decoded as PIL does, they differ only by resampling (a few levels of 255;
    # measured on the 1,000 ImageNet sample photos: mean 2.6, max 16.3)
    from helpers import make_image
    from PIL import Image

    from data.dali import build_pipeline
    from data.multicrop import EvalTransform
    path = make_image(tmp_path / "rotated.JPEG", size=(120, 80), seed=3)
    with Image.open(path) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # "rotate 90 degrees to display"
        img.save(path, exif=exif, quality=95)
    cfg = data_cfg(crop_size=64, eval_resize=73)
    pipe = build_pipeline([str(path)], [0], train=False, data_cfg=cfg, seed=0, device=torch.device("cpu"))
    dali = torch.from_numpy(pipe.run()[0].at(0).copy()).float()
    pil = EvalTransform(64, 73)(path).float()
    assert (dali - pil).abs().mean() < 4
