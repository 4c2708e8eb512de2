import pytest
import torch

from common.errors import UserError
from googlenet.checkpoint import all_finite, load_checkpoint, save_checkpoint


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


@pytest.mark.parametrize("fails_in", ["fsync", "write"])
def test_a_full_disk_is_a_one_line_error_and_keeps_the_old_file(tmp_path, monkeypatch, fails_in):
    import errno
    import io
    import os
    path = save_checkpoint({"x": torch.ones(2)}, tmp_path / "last.pt")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    if fails_in == "fsync":
        monkeypatch.setattr(os, "fsync", full)
    else:  # inside torch.save, which reports it as a RuntimeError about stream positions
        real_fdopen = os.fdopen

        class FillsUp(io.BufferedWriter):
            def write(self, data):
                return full() if self.tell() > 1000 else super().write(data)
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode, buffering=0)))
    with pytest.raises(UserError, match=f"no space left on the device holding {tmp_path}"):
        save_checkpoint({"x": torch.zeros(20000)}, path)
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
    with pytest.raises(UserError, match="holds bare weights .* finetune.weights="):
        load_checkpoint(bare)


def test_one_reader_picks_the_weights_a_file_holds(tmp_path):
    from googlenet.checkpoint import FORMAT, read_weights
    raw, ema = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    ckpt = tmp_path / "run.pt"
    torch.save({"format": FORMAT, "model": raw, "ema": {"model": ema}, "config": {}, "classes": []}, ckpt)
    assert read_weights(ckpt, "ckpt").kind == "ema" and torch.equal(read_weights(ckpt, "ckpt").state["w"], ema["w"])
    assert torch.equal(read_weights(ckpt, "ckpt", "raw").state["w"], raw["w"])
    torch.save({"format": FORMAT, "model": raw, "ema": None, "config": {}, "classes": []}, ckpt)
    assert read_weights(ckpt, "ckpt").kind == "raw"
    with pytest.raises(UserError, match="has no EMA weights .* use weights=raw"):
        read_weights(ckpt, "ckpt", "ema")
    bare = tmp_path / "ddp.pth"
    torch.save({"module.fc.weight": torch.zeros(2, 2)}, bare)
    weights = read_weights(bare, "finetune.weights")
    assert (weights.kind, list(weights.state), weights.checkpoint) == ("state dict", ["fc.weight"], None)


def test_checkpoints_of_an_older_format_are_refused_in_one_line(tmp_path):
    from googlenet.checkpoint import FORMAT, read_weights
    old = tmp_path / "old.pt"
    torch.save({"format": "googlenet-inception/1", "model": {}, "config": {}, "classes": []}, old)
    for read in (load_checkpoint, lambda p: read_weights(p, "ckpt")):
        with pytest.raises(UserError, match=f"has format googlenet-inception/1, this version reads {FORMAT}"):
            read(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_all_finite_finds_each_kind_of_non_finite_value_and_no_other(dtype):
    big = torch.finfo(dtype).max
    state = {"w": torch.full((1000,), big, dtype=dtype), "b": torch.zeros(3, dtype=dtype),
             "steps": torch.tensor(2**62)}  # finite however large: a sum of them overflows dtype, not the check
    assert all_finite(state) and all_finite({}) and all_finite({"steps": torch.tensor(1)})
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = {**state, "b": torch.tensor([0.0, bad, 0.0], dtype=dtype)}
        assert not all_finite(broken), bad
