import math
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from googlenet.cli import run
from googlenet.checkpoint import load_checkpoint, save_checkpoint
from googlenet.config import compose_config
from googlenet.ema import ModelEMA
from googlenet.errors import UserError
from googlenet.loss import InceptionLoss
from googlenet.models import build_model
from googlenet.schedule import LRSchedule
from googlenet.trainer import NonFiniteLoss, Trainer, TrainingInterrupted, train
from helpers import ROOT, run_script, tiny_overrides


def test_aux_terms_reach_the_gradient_with_weight_0_3():
    torch.manual_seed(0)
    model = build_model("inception_v1", num_classes=5, dropout=0.0, aux_dropout=0.0).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    out = model(x)
    loss, terms = InceptionLoss(0.3)(out, y)
    by_hand = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux[0], y) + F.cross_entropy(out.aux[1], y))
    assert torch.allclose(loss, by_hand)
    assert set(terms) == {"main", "aux1", "aux2"}
    assert torch.allclose(terms["aux2"], F.cross_entropy(out.aux[1], y))
    g_ours = torch.autograd.grad(loss, model.aux1.fc2.weight, retain_graph=True)[0]
    g_aux_alone = torch.autograd.grad(F.cross_entropy(out.aux[0], y), model.aux1.fc2.weight, retain_graph=True)[0]
    assert torch.allclose(g_ours, 0.3 * g_aux_alone, atol=1e-7)
    g_fc = torch.autograd.grad(loss, model.fc.weight, retain_graph=True)[0]  # the main head is unweighted
    assert torch.allclose(g_fc, torch.autograd.grad(F.cross_entropy(out.logits, y), model.fc.weight)[0])


def _schedule(**kw):
    base = OmegaConf.load(ROOT / "configs" / "schedule" / "cosine.yaml")
    base.update(kw)
    return base


def test_schedules_produce_the_expected_lr_sequences():
    paper = LRSchedule(_schedule(name="step", interval="epoch", warmup_epochs=0, step_epochs=8, gamma=0.96),
                       1.0, steps_per_epoch=10, epochs=40)
    assert [paper(e * 10) for e in (0, 7, 8, 15, 16, 24)] == pytest.approx([1, 1, 0.96, 0.96, 0.96 ** 2, 0.96 ** 3])
    assert paper(79) == 1.0 and paper(80) == pytest.approx(0.96)  # changes only at the epoch boundary
    per_step = LRSchedule(_schedule(name="step", interval="step", warmup_epochs=0, step_epochs=0.5, gamma=0.5),
                          1.0, steps_per_epoch=4, epochs=2)
    assert [per_step(s) for s in range(5)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    cosine = LRSchedule(_schedule(name="cosine", warmup_epochs=1, warmup_start=0.0, min_lr=0.0), 2.0,
                        steps_per_epoch=4, epochs=3)
    assert [cosine(s) for s in range(4)] == pytest.approx([0, 0.5, 1.0, 1.5])
    assert cosine(4) == pytest.approx(2.0)
    assert cosine(8) == pytest.approx(1.0)  # half way through the 8 post-warmup steps
    assert cosine(12) == pytest.approx(0.0, abs=1e-12)
    multi = LRSchedule(_schedule(name="multistep", interval="epoch", warmup_epochs=0, milestones=[2, 5],
                                 gamma=0.1), 1.0, steps_per_epoch=3, epochs=6)
    assert [multi(e * 3) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01])


def test_ema_math_and_batch_norm_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.5)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # first update: decay = min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.module[0].weight, 0.1 * w0 + 0.9 * (w0 + 1))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 0.9 * 4.0))
    assert ema.module[1].num_batches_tracked.item() == 7
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay() == 0.5
    assert torch.allclose(ema.module[0].weight, w0 + 1, atol=1e-5)
    assert not any(p.requires_grad for p in ema.module.parameters())


def _cfg(tmp_path, data_root, *extra, run="run"):
    return compose_config("train", tiny_overrides(data_root, tmp_path / run, *extra))


def _weights(path):
    return load_checkpoint(path)["model"]


def test_resumed_run_ends_with_identical_weights(tmp_path, tiny_folder):
    extra = ["trainer.epochs=2", "ema.enabled=true", "data.augment.lighting=0.1", "data.augment.hue=0.05"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, run="straight")) == 0
    stopped = Trainer(_cfg(tmp_path, tiny_folder, *extra, run="split"))
    step = stopped._optimizer_step

    def stop_at_the_end_of_epoch_1():
        step()
        stopped.stop_requested = stopped.step == 6  # as if SIGTERM arrived during the last step
    stopped._optimizer_step = stop_at_the_end_of_epoch_1
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    stopped.close()
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["epoch"] == 1
    assert train(_cfg(tmp_path, tiny_folder, *extra, "resume=auto", run="split")) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["model"]:
        assert torch.equal(a["ema"]["model"][key], b["ema"]["model"][key]), key


def test_checkpoint_contents_and_mid_epoch_resume(tmp_path, tiny_folder):
    extra = ["trainer.epochs=1", "trainer.checkpoint_every_steps=2", "optim.accumulate=2"]
    assert train(_cfg(tmp_path, tiny_folder, *extra, run="full")) == 0
    state = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "ema", "optimizer", "scaler", "epoch", "step", "rng", "config", "classes"):
        assert key in state
    assert state["classes"] == ["n01", "n02", "n03"] and state["config"]["model"]["name"] == "inception_v1"
    assert state["step"] == 3  # 6 batches of 2 images, 2 batches per optimizer step
    # a mid-epoch checkpoint (after step 2 = batch 4) resumed gives the same end state
    cfg = _cfg(tmp_path, tiny_folder, *extra, run="part")
    trainer = Trainer(cfg)
    original = trainer._optimizer_step

    def stop_after_two():
        original()
        if trainer.step == 2:
            trainer.stop_requested = True
    trainer._optimizer_step = stop_after_two
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    trainer.close()
    mid = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    assert (mid["epoch"], mid["batch_in_epoch"], mid["step"]) == (0, 4, 2)
    assert train(_cfg(tmp_path, tiny_folder, *extra, "resume=auto", run="part")) == 0
    end = _weights(tmp_path / "part" / "checkpoints" / "last.pt")
    full = _weights(tmp_path / "full" / "checkpoints" / "last.pt")
    assert all(torch.equal(end[k], full[k]) for k in full)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_folder):
    trainer = Trainer(_cfg(tmp_path, tiny_folder, "trainer.epochs=3"))
    criterion = trainer.criterion.forward

    def poisoned(outputs, targets):
        loss, terms = criterion(outputs, targets)
        return (loss * float("nan"), terms) if trainer.epoch == 1 else (loss, terms)
    trainer.criterion.forward = poisoned
    with pytest.raises(NonFiniteLoss, match="stopped without overwriting"):
        trainer.fit()
    trainer.close()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


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


def test_sigterm_writes_a_loadable_checkpoint_and_resume_finishes(tmp_path, tiny_folder):
    args = tiny_overrides(tiny_folder, tmp_path / "run", "trainer.epochs=400", "trainer.limit_val_batches=1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline:  # wait for the first epoch to finish
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped at epoch" in out and "resume=auto" in out
    state = load_checkpoint(log)
    assert 1 <= state["epoch"] < 400
    finish = run_script("train.py", *args[:-2], "trainer.epochs=" + str(state["epoch"] + 1), "resume=auto")
    assert finish.returncode == 0, finish.stderr
    assert load_checkpoint(log)["epoch"] == state["epoch"] + 1


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1 must be > 0"),
    ("optim.lrr=0.1", "optim.lrr is not a config key"),
    ("+optim.lrr=0.1", "adding new keys is not supported"),
    ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),
    ("data.eval_resize=20", "data.eval_resize=20 is smaller than data.crop_size"),
    ("model=resnet", "model"),
    ("trainer.precision=fp8", "trainer.precision='fp8' is not one of"),
    ("trainer.device=tpu", "trainer.device='tpu'"),
    ("resume=/no/such/file.pt", "resume=/no/such/file.pt is not a file"),
])
def test_bad_configs_fail_with_one_line_errors(capsys, override, message):
    assert run("train", train, ["data.crop_size=32", override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_bad_config_from_the_shell(tmp_path):
    result = run_script("train.py", "optim.momentum=2", timeout=60)
    assert result.returncode == 2 and result.stderr == "error: optim.momentum=2 must be <= 1\n"


def test_missing_dataset_is_a_one_line_error(tmp_path):
    result = run_script("train.py", f"data.root={tmp_path / 'missing'}", "trainer.device=cpu",
                        f"hydra.run.dir={tmp_path / 'run'}", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def test_tensorboard_events_hold_the_named_scalars(tmp_path, tiny_folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert train(_cfg(tmp_path, tiny_folder, "trainer.epochs=1", "ema.enabled=true")) == 0
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


def test_inception_v2_runs_on_the_sample_set(tmp_path, sample_root):
    result = run_script("train.py", "model=inception_v2", "data=sample", f"data.root={sample_root}",
                        "trainer.limit_train_batches=2", "trainer.epochs=1", "trainer.limit_val_batches=1",
                        f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "epoch 1/1" in result.stdout


@pytest.mark.slow
def test_sample_demo_learns_well_above_chance(tmp_path, sample_root):
    cfg = compose_config("train", ["data=sample", f"data.root={sample_root}", "data.crop_size=64",
                                   "data.eval_resize=73", "trainer.epochs=4", "trainer.progress=false",
                                   f"hydra.run.dir={tmp_path / 'run'}"])
    assert train(cfg) == 0
    metrics = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["metrics"]
    assert metrics["val_top1"] > 25.0  # chance is 10%
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_keep_last_checkpoints_and_bf16_autocast_on_cpu(tmp_path, tiny_folder):
    cfg = _cfg(tmp_path, tiny_folder, "trainer.epochs=3", "trainer.keep_last=2", "trainer.precision=bf16")
    assert train(cfg) == 0
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert names == ["best.pt", "epoch_2.pt", "epoch_3.pt", "last.pt"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_3.pt")["epoch"] == 3


def test_experiment_presets_compose_to_the_papers_recipes():
    g = compose_config("train", ["experiment=googlenet_paper"])
    assert g.model.name == "inception_v1_paper" and g.optim.name == "sgd" and g.optim.momentum == 0.9
    assert (g.schedule.name, g.schedule.interval, g.schedule.step_epochs, g.schedule.gamma) == ("step", "epoch", 8, 0.96)
    assert g.ema.enabled and g.data.augment.random_interpolation and g.data.augment.scale == [0.08, 1.0]
    v3 = compose_config("train", ["experiment=inception_v3_paper"])
    assert v3.model.name == "inception_v3" and v3.model.aux_batch_norm and v3.data.crop_size == 299
    assert (v3.optim.name, v3.optim.alpha, v3.optim.eps, v3.optim.tf_style) == ("rmsprop", 0.9, 1.0, True)
    assert (v3.optim.lr, v3.optim.clip_grad_norm, v3.loss.label_smoothing) == (0.045, 2.0, 0.1)
    assert (v3.schedule.step_epochs, v3.schedule.gamma) == (2, 0.94)
    # the shell wins over a preset
    mixed = compose_config("train", ["experiment=googlenet_paper", "model=inception_v1", "optim.lr=0.02"])
    assert mixed.model.name == "inception_v1" and mixed.optim.lr == 0.02


def test_tf_style_rmsprop_and_lr_scaling():
    from googlenet.optim import RMSpropTF, scaled_lr
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    g = torch.tensor([0.5, 1.0])
    opt = RMSpropTF([p], lr=0.1, alpha=0.9, eps=1.0, momentum=0.9)
    ms, mom, expected = torch.ones(2), torch.zeros(2), p.detach().clone()
    for _ in range(2):
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g ** 2           # the mean square starts at 1
        mom = 0.9 * mom + 0.1 * g / torch.sqrt(ms + 1.0)  # eps inside the square root
        expected -= mom
    assert torch.allclose(p.detach(), expected)
    cfg = OmegaConf.create({"lr": 0.1, "base_batch": 256, "scale_lr": "linear"})
    assert scaled_lr(cfg, 1024) == pytest.approx(0.4)
    cfg.scale_lr = "sqrt"
    assert scaled_lr(cfg, 1024) == pytest.approx(0.2)
    cfg.scale_lr = "none"
    assert scaled_lr(cfg, 1024) == pytest.approx(0.1)
