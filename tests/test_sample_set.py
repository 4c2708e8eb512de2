from PIL import Image

from data.datasets import ImageFolderDataset
from data.multicrop import EvalTransform


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


def test_a_named_folder_is_never_deleted_or_overwritten(tmp_path):
    import pytest

    from common.errors import UserError
    from data.sample import ensure_sample_data
    mine = tmp_path / "my_photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(UserError, match="holds other files and is not a sample set"):
        ensure_sample_data(mine)
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"] and (mine / "holiday.jpg").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (ensure_sample_data(empty) / ".complete").is_file()  # an empty folder is filled


def test_a_link_to_an_empty_folder_is_filled_where_it_points(tmp_path, monkeypatch):
    from data import sample
    monkeypatch.setattr(sample, "generate", lambda root, seed: root)  # the images are not the point here
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    assert sample.ensure_sample_data(tmp_path / "link") == tmp_path / "empty"
    assert (tmp_path / "link" / ".complete").is_file() and (tmp_path / "link").is_symlink()
