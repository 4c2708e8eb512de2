import pytest
import torch

from googlenet.checkpoint import load_checkpoint, save_checkpoint
from googlenet.errors import UserError


def test_atomic_checkpoint_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"x": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    path.write_bytes(b"garbage")
    with pytest.raises(UserError, match="corrupt or not a checkpoint"):
        load_checkpoint(path)


def test_files_get_the_usual_permissions(tmp_path):
    import os
    import stat
    old = os.umask(0o022)
    try:
        path = save_checkpoint({"x": torch.ones(1)}, tmp_path / "run" / "last.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # group and others can read it, as with open(path, "w")
