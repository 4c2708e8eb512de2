from pathlib import Path

import pytest
import torch
from helpers import ROOT, make_folder
from omegaconf import OmegaConf

from common.errors import UserError
from data.classes import class_names, imagenet_classes
from data.datasets import ImageFolderDataset
from data.imaging import UnreadableImage, load_rgb
from data.loaders import build_data
from data.multicrop import EvalTransform


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
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and target == 1 and skipped == ()


def test_missing_root_split_and_empty_class_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; set data.root"):
        ImageFolderDataset(tmp_path / "nowhere", "train", EvalTransform())
    root = make_folder(tmp_path / "ds", splits=("train",))
    with pytest.raises(UserError, match=r"split .*val does not exist"):
        ImageFolderDataset(root, "val", EvalTransform())
    (root / "train" / "n04").mkdir()
    with pytest.raises(UserError, match=r"n04 has no images"):
        ImageFolderDataset(root, "train", EvalTransform())


def test_corrupt_files_are_skipped_reported_and_every_batch_arrives(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=3)
    bad_zero = root / "train" / "n02" / "zero.JPEG"
    bad_zero.write_bytes(b"")
    good = (root / "train" / "n01" / "n01_0.JPEG").read_bytes()
    bad_trunc = root / "train" / "n03" / "truncated.JPEG"
    bad_trunc.write_bytes(good[: len(good) // 2])
    (root / "train" / "n01" / "notes.JPEG").write_text("not an image")
    odd_name = root / "train" / "n01" / "line\nbreak.JPEG"  # a newline in a file name is still one name
    odd_name.write_bytes(b"")
    with pytest.raises(UnreadableImage):
        load_rgb(bad_trunc)
    bundle = build_data(data_cfg(root, batch_size=3, workers=2), seed=0)
    bundle.train.set_epoch(0)
    batches = list(bundle.train)
    assert len(batches) == len(bundle.train) == 13 // 3
    skipped = {p for _, _, names, _ in batches for p in names}
    assert skipped == {str(bad_zero), str(bad_trunc), str(root / "train" / "n01" / "notes.JPEG"), str(odd_name)}
    assert all(images.shape == (3, 3, 32, 32) for images, _, _, _ in batches)


def test_same_seed_same_batches_and_epochs_differ(tiny_folder):
    def batches(seed, epoch, workers):
        bundle = build_data(data_cfg(tiny_folder, workers=workers, **{"augment.hue": 0.1}), seed=seed)
        bundle.train.set_epoch(epoch)
        return [(x.clone(), y.clone(), f.clone()) for x, y, _, f in bundle.train]
    a, b = batches(1, 0, 0), batches(1, 0, 2)  # worker count does not change what is drawn
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(f1, f2)
               for (x1, y1, f1), (x2, y2, f2) in zip(a, b))
    assert all(f[:, 3].abs().max() <= 0.1 for _, _, f in a) and any(f[:, 3].abs().max() > 0 for _, _, f in a)
    c = batches(1, 1, 0)
    assert not all(torch.equal(x1, x2) for (x1, _, _), (x2, _, _) in zip(a, c))





def test_symbolic_link_loops_are_one_line_errors(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=1)
    (root / "train" / "loop").symlink_to("loop")
    with pytest.raises(UserError, match="loop: Too many levels of symbolic links"):
        ImageFolderDataset(root, "train", EvalTransform())
    (root / "train" / "loop").unlink()
    (root / "train" / "n01" / "self.JPEG").symlink_to("self.JPEG")
    with pytest.raises(UserError, match="self.JPEG: Too many levels of symbolic links"):
        ImageFolderDataset(root, "train", EvalTransform())
