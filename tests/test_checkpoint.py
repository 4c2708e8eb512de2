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
    assert torch.equal(load_checkpoint(path, required=("x",))["x"], torch.ones(3))
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


def test_a_full_disk_is_a_one_line_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    import os
    path = save_checkpoint({"x": torch.ones(2)}, tmp_path / "last.pt")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=f"no space left on the device holding {tmp_path}"):
        save_checkpoint({"x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path, required=("x",))["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class NotATensor:
    pass


def test_pickles_with_code_are_refused_plainly_and_incomplete_checkpoints_named(tmp_path):
    from googlenet.checkpoint import FORMAT
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": NotATensor()}, evil)
    with pytest.raises(UserError) as e:
        load_checkpoint(evil)
    assert str(e.value).startswith(f"{evil} is not a safe checkpoint") and "weights_only=False" not in str(e.value)
    partial = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "model": {}}, partial)
    with pytest.raises(UserError, match="lacks config, classes"):
        load_checkpoint(partial)
    bare = tmp_path / "googlenet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bare)
    with pytest.raises(UserError, match="holds bare weights .* model.weights="):
        load_checkpoint(bare)
