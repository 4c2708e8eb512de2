import math

import pytest
import torch
from helpers import tiny_overrides

from googlenet.checkpoint import load_checkpoint
from googlenet.cli.config import compose_config
from googlenet.training.stopping import TrainingInterrupted
from googlenet.training.trainer import NonFiniteLoss, Trainer, train


def _cfg(tmp_path, data_root, *extra, run="run"):
    return compose_config("train", tiny_overrides(data_root, tmp_path / run, *extra))


def _weights(path):
    return load_checkpoint(path)["model"]


def test_resumed_run_ends_with_identical_weights(tmp_path, tiny_folder):
    extra = ["trainer.epochs=2", "ema.enabled=true", "data.augment.lighting=0.1", "data.augment.hue=0.05"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, run="straight")).exit_code == 0
    stopped = Trainer(_cfg(tmp_path, tiny_folder, *extra, run="split"))
    # as if SIGTERM arrived during the last step of epoch 1
    stopped.hooks["step"].append(lambda t: t.stop.request() if t.state.step == 6 else None)
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    stopped.close()
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["epoch"] == 1
    assert train(_cfg(tmp_path, tiny_folder, *extra, "resume=auto", run="split")).exit_code == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["model"]:
        assert torch.equal(a["ema"]["model"][key], b["ema"]["model"][key]), key


def test_checkpoint_contents_and_mid_epoch_resume(tmp_path, tiny_folder):
    extra = ["trainer.epochs=1", "trainer.checkpoint_every_steps=2", "optim.accumulate=2"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, run="full")).exit_code == 0
    state = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "ema", "optimizer", "scaler", "epoch", "step", "rng", "config", "classes"):
        assert key in state
    assert state["classes"] == ["n01", "n02", "n03"] and state["config"]["model"]["name"] == "inception_v1"
    made = state["provenance"]  # where the checkpoint came from
    assert made["torch"] == torch.__version__ and made["device"].startswith("cpu") and made["world_size"] == 1
    assert made["code"] is None or (len(made["code"]["commit"]) == 40 and isinstance(made["code"]["dirty"], bool))
    assert state["step"] == 3  # 6 batches of 2 images, 2 batches per optimizer step
    # a mid-epoch checkpoint (after step 2 = batch 4) resumed gives the same end state
    cfg = _cfg(tmp_path, tiny_folder, *extra, run="part")
    trainer = Trainer(cfg)
    trainer.hooks["step"].append(lambda t: t.stop.request() if t.state.step == 2 else None)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.close()
    mid = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    assert (mid["epoch"], mid["samples_in_epoch"], mid["step"]) == (0, 8, 2)  # 4 batches of 2 images
    assert train(_cfg(tmp_path, tiny_folder, *extra, "resume=auto", run="part")).exit_code == 0
    end = _weights(tmp_path / "part" / "checkpoints" / "last.pt")
    full = _weights(tmp_path / "full" / "checkpoints" / "last.pt")
    assert all(torch.equal(end[k], full[k]) for k in full)


@pytest.mark.parametrize("extra", [[], ["trainer.checkpoint_every_steps=1", "trainer.log_every=100"]])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_folder, extra):
    # with a loss checked only every 100 steps, the periodic save must still refuse non-finite weights
    trainer = Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=3", *extra))
    criterion = trainer.train_step.criterion.forward

    def poisoned(outputs, targets):
        loss, terms = criterion(outputs, targets)
        return (loss * float("nan"), terms) if trainer.state.epoch == 1 else (loss, terms)
    trainer.train_step.criterion.forward = poisoned
    with pytest.raises(NonFiniteLoss, match="became"):
        trainer.fit()
    trainer.close()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["samples_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_loss_that_is_non_finite_from_the_start_says_no_checkpoint_was_written(tmp_path, tiny_folder, capsys,
                                                                               monkeypatch):
    from googlenet.training.loss import InceptionLoss
    criterion = InceptionLoss.forward
    monkeypatch.setattr(InceptionLoss, "forward",
                        lambda self, outputs, targets: (criterion(self, outputs, targets)[0] * float("nan"),
                                                        criterion(self, outputs, targets)[1]))
    result = train(_cfg(tmp_path, tiny_folder, "trainer.epochs=1"))
    assert result.exit_code == 1 and result.status == "failed"
    assert "stopped without writing a checkpoint (none was written before)" in capsys.readouterr().out
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_tensorboard_events_hold_the_named_scalars(tmp_path, tiny_folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert train(_cfg(tmp_path, tiny_folder, "trainer.epochs=1", "ema.enabled=true")).exit_code == 0
    events = list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/loss_main", "train/loss_aux1", "train/loss_aux2", "train/lr", "train/top1",
                "train/top5", "perf/images_per_sec", "perf/data_wait_fraction", "time/epoch_seconds",
                "val/loss", "val/top1", "val/top5", "val_ema/top1", "hparam/val_top1"):
        assert tag in tags, tag
    assert "train/augmented_batch" in acc.Tags()["images"]
    lrs = [e.value for e in acc.Scalars("train/lr")]
    assert len(lrs) == 6 and all(math.isfinite(v) for v in lrs)
    assert (tmp_path / "run" / "train.log").read_text().count("epoch 1/1") == 1
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_keep_last_checkpoints_and_bf16_autocast_on_cpu(tmp_path, tiny_folder):
    cfg = _cfg(tmp_path, tiny_folder, "trainer.epochs=3", "trainer.keep_last=2", "runtime.precision=bf16")
    assert train(cfg).exit_code == 0
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "epoch_2.pt", "epoch_3.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_3.pt")["epoch"] == 3


def test_own_folder_dataset_takes_its_class_count_from_the_folders(tmp_path):
    from helpers import make_folder
    root = make_folder(tmp_path / "flowers", classes=tuple(f"kind_{i}" for i in range(5)), per_class=2)
    overrides = [o for o in tiny_overrides(root, tmp_path / "run", "trainer.epochs=1") if "num_classes" not in o]
    result = train(compose_config("train", ["data=folder", *overrides]))
    assert result.exit_code == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["classes"] == [f"kind_{i}" for i in range(5)] and state["model"]["fc.weight"].shape[0] == 5
    assert state["config"]["data"]["num_classes"] == state["config"]["model"]["num_classes"] == 5


def test_validation_skips_unreadable_images_and_reports_them(tmp_path, tiny_folder):
    bad = tiny_folder / "val" / "n02" / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    assert train(_cfg(tmp_path, tiny_folder, "trainer.epochs=1")).exit_code == 0
    metrics = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["metrics"]
    assert metrics["val_images"] == 12  # 13 files, one unreadable: skipped, not replaced by a neighbour
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"skipped 1 unreadable image(s): {bad}" in log
