"""Resuming and the run directory: what a stopped, killed or changed run may and may not do."""
import os
from pathlib import Path

import pytest
import torch
from helpers import tiny_overrides

from common.errors import UserError
from common.files import current_umask
from googlenet.checkpoint import RunCheckpoints, load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.rundir import RunLock
from googlenet.training.stopping import TrainingInterrupted
from googlenet.training.trainer import Trainer, train


def _cfg(tmp_path, data_root, *extra, run="run"):
    return compose_config("train", tiny_overrides(data_root, tmp_path / run, *extra))


def _stop_at(trainer, step):
    trainer.hooks["step"].append(lambda t: t.stop.request() if t.state.step == step else None)


def _interrupted(cfg, hook_event="step", at=2):
    trainer = Trainer(cfg)
    if hook_event == "step":
        _stop_at(trainer, at)
    else:
        trainer.hooks["val_batch"].append(lambda t: t.stop.request())
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.close()


def test_a_fresh_run_never_replaces_the_checkpoints_of_its_run_dir(tmp_path, tiny_folder):
    assert train(_cfg(tmp_path, tiny_folder, "trainer.epochs=2")).exit_code == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    with pytest.raises(UserError, match="already holds checkpoints .*resume=auto.*trainer.overwrite=true"):
        Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=1"))
    assert last.read_bytes() == before
    assert train(_cfg(tmp_path, tiny_folder, "trainer.epochs=1", "trainer.overwrite=true")).exit_code == 0
    assert load_checkpoint(last)["epoch"] == 1


def _no_hard_links(source, target):
    raise PermissionError(1, "Operation not permitted", str(target))


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_an_epoch_is_written_once_under_its_names_best_first_and_last_pt_last(tmp_path, monkeypatch, links):
    published, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: published.append(Path(dst).name) or real_replace(src, dst))
    if not links:  # a file system without hard links: copies
        monkeypatch.setattr(os, "link", _no_hard_links)
    checkpoints = RunCheckpoints(tmp_path)
    checkpoints.save_epoch({"x": torch.ones(3)}, epoch=3, improved=True, keep_last=1)
    assert published == ["best.pt", "epoch_3.pt", "last.pt"]  # a kill in between leaves last.pt at the epoch before
    inodes = {(tmp_path / name).stat().st_ino for name in published}
    assert len(inodes) == (1 if links else 3)
    checkpoints.save_epoch({"x": torch.zeros(3)}, epoch=4, improved=False, keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch_4.pt", "last.pt"]  # no temp file
    assert [load_checkpoint(tmp_path / n, required=("x",))["x"].sum().item() for n in ("best.pt", "last.pt")] == [3, 0]
    assert oct((tmp_path / "best.pt").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def test_a_stop_during_validation_keeps_the_trained_epoch_and_resume_validates_it(tmp_path, tiny_folder):
    extra = ["trainer.epochs=2", "ema.enabled=true"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, run="straight")).exit_code == 0
    _interrupted(_cfg(tmp_path, tiny_folder, *extra, run="split"), hook_event="val_batch")
    saved = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert saved["epoch"] == 1 and saved["pending_validation"] and "val_top1" not in saved["metrics"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, "resume=auto", run="split")).exit_code == 0
    log = (tmp_path / "split" / "train.log").read_text()
    assert log.count("epoch 1/2 |") == 1 and log.count("epoch 2/2 |") == 1  # epoch 1 validated after the resume
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["metrics"]["val_top1"] == b["metrics"]["val_top1"] and a["best"] == b["best"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_stale_temporary_files_are_removed_at_start_and_nothing_else(tmp_path, tiny_folder):
    stale = tmp_path / "run" / "checkpoints" / ".last.pt.x1y2z3ab.googlenet-tmp"  # what write_atomic names them
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint from a kill -9")
    mine = [tmp_path / "run" / name for name in (".env.tmpl", ".notes.tmp.txt", ".x.tmp", ".a.b.tmp")]
    for path in mine:
        path.write_text("a user's file")
    Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=1")).close()
    assert not stale.exists()
    assert all(path.read_text() == "a user's file" for path in mine)


def test_a_second_trainer_on_the_same_run_dir_is_refused(tmp_path, tiny_folder):
    lock = RunLock(tmp_path / "run").acquire()
    try:
        with pytest.raises(UserError, match="another trainer .* is writing to"):
            Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=1"))
    finally:
        lock.release()
    Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=1")).close()  # free again


def test_resume_applies_the_configs_optimizer_settings_and_refuses_another_optimizer(tmp_path, tiny_folder):
    _interrupted(_cfg(tmp_path, tiny_folder, "trainer.epochs=2"))
    trainer = Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", "resume=auto", "optim.momentum=0.5",
                           "optim.weight_decay=0.001", "optim.nesterov=true"))
    groups = trainer.train_step.optimizer.param_groups
    assert [g["momentum"] for g in groups] == [0.5, 0.5] and all(g["nesterov"] for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.001, 0.0]  # no decay on norms and biases, as configured
    assert any(trainer.train_step.optimizer.state.values())  # the momentum buffers were restored
    trainer.close()
    with pytest.raises(UserError, match="trained with the SGD optimizer, not RMSpropTF"):
        Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", "resume=auto", "optim=rmsprop"))
    with pytest.raises(UserError, match="groups the parameters differently"):
        Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", "resume=auto", "optim.no_decay_norm_bias=false"))


def test_mid_epoch_resume_with_another_batch_size_neither_skips_nor_repeats(tmp_path, tiny_folder):
    _interrupted(_cfg(tmp_path, tiny_folder, "trainer.epochs=1"), at=2)  # 2 steps of 2 images: 4 of 12 seen
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["samples_in_epoch"] == 4
    trainer = Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=1", "resume=auto", "data.batch_size=4"))
    seen = []
    trainer.hooks["step"].append(lambda t: seen.append(t.state.samples_in_epoch))
    trainer.fit()
    trainer.close()
    assert seen == [8, 12]  # the remaining 8 images as 2 batches of 4, then the epoch ends
    end = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (end["epoch"], end["samples_in_epoch"], end["step"]) == (1, 0, 4)


def test_resume_refuses_a_changed_seed_or_network(tmp_path, tiny_folder):
    _interrupted(_cfg(tmp_path, tiny_folder, "trainer.epochs=2"))
    with pytest.raises(UserError, match="trained with seed=0; resume with seed=0"):
        Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", "resume=auto", "seed=1"))
    with pytest.raises(UserError, match="trained with model.aux_logits=True; resume with the same model settings"):
        Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", "resume=auto", "model.aux_logits=false"))


def test_an_fp16_run_resumes_a_32_bit_checkpoint(tmp_path, tiny_folder):
    # fp16 needs CUDA for training; the checkpoint side is device independent and runs here with a CPU scaler
    from googlenet.training.state import apply_checkpoint
    _interrupted(_cfg(tmp_path, tiny_folder, "trainer.epochs=2"))
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(path)
    assert checkpoint["scaler"] == {}  # what a disabled scaler saves
    trainer = Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=2", run="other"))
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    state, notes = apply_checkpoint(checkpoint, path, model=trainer.model, ema=None, optimizer=trainer.train_step.optimizer,
                                    scaler=scaler)
    trainer.close()
    assert state.step == 2 and any("gradient scaler starts afresh" in n for n in notes)
