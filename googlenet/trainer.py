"""The training loop: main + aux losses, accumulation, clipping, EMA, validation, checkpoints, resume.

`Trainer.__init__` reads as the list of what a run is made of; each `build_*` step is a few lines. The
pieces with a job of their own live beside it: `runtime` (device, precision), `state` (what a checkpoint
holds), `meters` (device-side sums), `stopping` (signals), `runlog` (console, train.log, TensorBoard).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from omegaconf import open_dict
from torch import nn

from data.checks import check_bool, check_choice, check_number
from data.loaders import build_data

from . import distributed as D
from .checkpoint import RunCheckpoints, finite
from .errors import UserError
from .finetune import keep_frozen_in_eval, prepare_start
from .meters import DeviceMeters, IntervalTimer
from .models.layers import AUX_HEADS
from .models.registry import build_from_config
from .report import describe, log_epoch, log_image_grid, log_interval, log_validation, report_skipped, write_hparams
from .runlog import RunLog
from .rundir import RunLock, clean_leftovers, refuse_existing_checkpoints
from .runtime import SEED_LIMIT, build_runtime, derive_seed, resolve_device, seed_everything
from .state import RunResult, RunState, make_checkpoint, resume_from, resume_path
from .step import TRAIN_METERS, TrainStep
from .stopping import StopRequest, TrainingInterrupted
from .validation import validate_models



class NonFiniteLoss(Exception):
    pass


def check_trainer_config(cfg) -> None:
    """The `trainer` loop keys, `seed` and `resume` (device and precision: `runtime.check_runtime_config`)."""
    t = "trainer"
    check_number(cfg, "seed", integer=True, low=0, high=SEED_LIMIT)
    check_number(cfg, f"{t}.epochs", integer=True, low=1)
    check_choice(cfg, f"{t}.progress", ["auto", True, False])
    check_choice(cfg, f"{t}.best_metric", ["top1", "top5", "loss"])
    for k in ("limit_train_batches", "limit_val_batches", "checkpoint_every_steps"):
        check_number(cfg, f"{t}.{k}", integer=True, low=1, optional=True)
    for k in ("val_every", "log_every"):
        check_number(cfg, f"{t}.{k}", integer=True, low=1)
    check_number(cfg, f"{t}.keep_last", integer=True, low=0)
    for k in ("log_images", "overwrite"):
        check_bool(cfg, f"{t}.{k}")
    resume = cfg.resume
    if resume is not None and resume != "auto" and not Path(str(resume)).expanduser().is_file():
        raise UserError(f"resume={resume} is not a file; pass resume=auto, resume=null or a checkpoint path")


def batches_per_epoch(loader_batches: int, limit: int | None, accumulate: int) -> int:
    """Batches trained per epoch: the loader's (or `limit`), a whole number of accumulation groups."""
    batches = (min(loader_batches, limit) if limit else loader_batches) // accumulate * accumulate
    if batches == 0:
        raise UserError(f"an epoch has {loader_batches} batch(es), fewer than optim.accumulate={accumulate}; "
                        "lower optim.accumulate or data.batch_size")
    return batches


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.env, self.lock, self.log = None, None, None
        self.state = RunState()
        self.stop = StopRequest()
        # hooks["step"] run after every optimizer step, hooks["val_batch"] after every validation batch
        self.hooks: dict[str, list[Callable[[Trainer], None]]] = {"step": [], "val_batch": []}
        self.skipped: list[str] = []
        try:
            self.build_runtime()
            self.build_output()
            self.build_data()
            self.build_model()
            self.build_optimization()
            self.resume_if_asked()
        except BaseException:
            self.close()  # the lock, the log files and the process group of a run that never started
            raise

    def build_runtime(self) -> None:
        t = self.cfg.trainer
        device = resolve_device(t.device)
        self.env = D.init_distributed(self.cfg.dist, device.type)
        if self.env.enabled and device.type == "cuda":
            device = torch.device("cuda", self.env.local_rank)
        self.runtime = build_runtime(device, t.precision, t.channels_last, t.cudnn_benchmark)
        self.device = device

    def build_output(self) -> None:
        self.run_dir = Path(D.broadcast_string(self.cfg.run_dir, self.env))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.lock = RunLock(self.run_dir).acquire() if self.env.is_main else None
        if self.env.is_main:
            clean_leftovers(self.run_dir)
        self.checkpoints = RunCheckpoints(self.ckpt_dir, enabled=self.env.is_main)
        self.log = RunLog(self.run_dir, enabled=self.env.is_main, progress=self.cfg.trainer.progress)

    def build_data(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.data = build_data(cfg.data, cfg.seed, self.env.rank, self.env.world_size, self.device)
        if cfg.data.num_classes is None:  # data=folder: as many classes as class folders
            with open_dict(cfg):
                cfg.data.num_classes = cfg.model.num_classes = len(self.data.classes)

    def build_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_from_config(cfg.model)
        self.frozen = prepare_start(model, cfg.model, self.log)  # fine-tuning: weights to start from, frozen part
        if self.env.enabled:  # then distinct dropout streams per rank
            torch.manual_seed(derive_seed(cfg.seed, "rank", self.env.rank))
            if cfg.dist.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = self.runtime.prepare(model)
        self.num_aux = sum(getattr(model, name, None) is not None for name in AUX_HEADS)

    def build_optimization(self) -> None:
        cfg = self.cfg
        self.micro_batch = cfg.data.batch_size * self.env.world_size  # images per batch, all ranks
        self.global_batch = self.micro_batch * cfg.optim.accumulate
        self.batches_per_epoch = batches_per_epoch(len(self.data.train), cfg.trainer.limit_train_batches,
                                                   cfg.optim.accumulate)
        self.steps_per_epoch = self.batches_per_epoch // cfg.optim.accumulate
        step = self.train_step = TrainStep.build(cfg, self.model, self.runtime, self.env, self.steps_per_epoch,
                                                 self.global_batch)
        self.optimizer, self.scaler, self.ema, self.peak_lr = step.optimizer, step.scaler, step.ema, step.peak_lr
        self.train_model, self.normalizer = step.train_model, step.normalizer

    def resume_if_asked(self) -> None:
        path = resume_path(self.cfg.resume, self.ckpt_dir, D.launched_by_a_scheduler())
        if path is None:
            refuse_existing_checkpoints(self.run_dir, self.cfg.trainer.overwrite)
            if self.cfg.resume == "auto" or D.launched_by_a_scheduler():
                self.log.info(f"resume=auto: no {self.ckpt_dir / 'last.pt'} yet, starting from scratch")
            return
        self.state, notes = resume_from(path, self.cfg, self.data.classes, model=self.model, ema=self.ema,
                                        optimizer=self.optimizer, scaler=self.scaler, env=self.env, device=self.device)
        s = self.state
        self.log.info(f"resumed from {path}: epoch {s.epoch + 1}, {s.samples_in_epoch} samples into it, step "
                      f"{s.step}" + "".join(f"; {note}" for note in notes))

    def fit(self) -> dict[str, float]:
        describe(self)
        epochs = self.cfg.trainer.epochs
        with self.stop:
            if self.state.pending_validation:  # the last run stopped after saving an epoch, before validating it
                self.finish_epoch()
            if self.state.epoch >= epochs:
                self.log.info(f"nothing to do: the checkpoint already finished {epochs} epochs")
            while self.state.epoch < epochs:
                self.run_epoch()
                if self.state.epoch < epochs and self.stop.agreed(self.env, self.device):
                    raise TrainingInterrupted()  # last.pt was just written
        write_hparams(self)
        return self.state.metrics

    def run_epoch(self) -> None:
        s, t = self.state, self.cfg.trainer
        start = time.perf_counter()
        metrics = self.train_epoch()
        metrics["epoch_time"] = time.perf_counter() - start
        s.epoch, s.samples_in_epoch, s.metrics = s.epoch + 1, 0, metrics
        s.pending_validation = s.epoch % t.val_every == 0 or s.epoch == t.epochs
        if s.pending_validation:
            self.save("last.pt")  # the trained epoch is safe before a long validation starts
            if self.stop.agreed(self.env, self.device):
                raise TrainingInterrupted()
        self.finish_epoch()

    def finish_epoch(self) -> None:
        metrics = dict(self.state.metrics)
        if self.state.pending_validation:
            metrics.update(self.validate_all())
            self.state.pending_validation = False
        self.state.metrics = metrics
        self.end_epoch(metrics)

    def train_epoch(self) -> dict[str, float]:
        """Train the rest of `state.epoch`; the epoch's training metrics."""
        t, s = self.cfg.trainer, self.state
        self.data.train.set_epoch(s.epoch, start=s.samples_in_epoch)
        self.train_model.train()
        keep_frozen_in_eval(self.model, self.frozen)
        self.normalizer.train()
        interval, epoch = DeviceMeters(TRAIN_METERS, self.device), DeviceMeters(TRAIN_METERS, self.device)
        timer = IntervalTimer()
        first = index = s.samples_in_epoch // self.micro_batch  # batches already trained (at this batch size)
        start_samples = s.samples_in_epoch
        bar = self.log.bar(self.batches_per_epoch, f"epoch {s.epoch + 1}/{t.epochs}", initial=index)
        for images, targets, skipped, factors in self.data.train:
            if index >= self.batches_per_epoch:
                break
            timer.data_arrived()
            self.skipped.extend(skipped)
            images, targets = self.train_step.to_device(images, targets, factors)
            if s.step == 0 and index == first and t.log_images:
                log_image_grid(self, images)
            position = s.position(self.steps_per_epoch, self.batches_per_epoch * self.micro_batch)
            stepped = self.train_step.batch(images, targets, index, s.step, position, interval)
            timer.images += len(targets)
            index += 1
            bar.update(1)
            if stepped:
                s.step += 1
                s.samples_in_epoch = start_samples + (index - first) * self.micro_batch
                if s.step % t.log_every == 0 or index == self.batches_per_epoch:
                    epoch.add_from(interval)
                    self.log_train(interval, timer, bar)
                    interval.reset()
                self.after_step(index, bar)
            timer.tick()
        bar.close()
        epoch.add_from(interval)
        return {**epoch.averages(self.env), "data_wait": timer.total_wait}

    def after_step(self, index: int, bar) -> None:
        """Hooks, periodic checkpoints and stop requests, between optimizer steps."""
        for hook in self.hooks["step"]:
            hook(self)
        if index >= self.batches_per_epoch:
            return  # the end of the epoch saves anyway
        every = self.cfg.trainer.checkpoint_every_steps
        if every and self.state.step % every == 0:
            self.save("last.pt")
        if self.stop.due(self.state.step, self.cfg.trainer.log_every, self.env, self.device):
            self.save("last.pt")
            bar.close()
            raise TrainingInterrupted()

    def log_train(self, meters: DeviceMeters, timer: IntervalTimer, bar) -> None:
        # every rank sees the same totals, so a non-finite loss stops all ranks together
        values = meters.read(self.env)
        loss = values["loss"] / max(values["images"], 1)
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"training loss became {loss} at step {self.state.step} (epoch "
                                f"{self.state.epoch + 1})")
        log_interval(self, values, *timer.end_interval(self.env.world_size), bar)

    def end_epoch(self, metrics: dict[str, float]) -> None:
        s = self.state
        key = f"{'val_ema' if self.ema else 'val'}_{self.cfg.trainer.best_metric}"
        improved = key in metrics and s.is_better(metrics[key], key.endswith("loss"))
        if improved:
            s.best = metrics[key]
        self.checkpoints.save_epoch(self.checkpoint(), s.epoch, improved, self.cfg.trainer.keep_last)
        log_epoch(self, metrics)

    def checkpoint(self) -> dict:
        """The checkpoint dict of now; never of non-finite weights (every rank holds the same weights)."""
        if not finite([self.model] + ([self.ema.module] if self.ema else [])):
            raise NonFiniteLoss(f"the weights became non-finite at step {self.state.step}")
        return make_checkpoint(self.state, model=self.model, ema=self.ema, optimizer=self.optimizer,
                               scaler=self.scaler, cfg=self.cfg, classes=self.data.classes, names=self.data.names,
                               device=self.device, env=self.env, global_batch=self.global_batch)

    def save(self, name: str = "last.pt") -> Path | None:
        return self.checkpoints.save(name, self.checkpoint())

    def validate_all(self) -> dict[str, float]:
        """The raw weights, and the EMA weights when EMA is on: {"val_top1": ..., "val_ema_top1": ...}.
        A stop request cuts validation short (its numbers are dropped) and stops the run."""
        def after_batch() -> bool:
            for hook in self.hooks["val_batch"]:
                hook(self)
            return not self.stop.requested
        models = {"val": self.model, **({"val_ema": self.ema.module} if self.ema else {})}
        results, skipped = validate_models(models, self.data.val, self.normalizer, self.runtime, self.env, self.log,
                                           self.cfg.trainer.limit_val_batches, on_batch=after_batch)
        report_skipped(self, skipped, "skipped")
        log_validation(self, results)
        return {f"{prefix}_{k}": v for prefix, values in results.items() for k, v in values.items()}

    def close(self) -> None:
        if self.log:
            self.log.close()
        if self.lock:
            self.lock.release()
        if self.env:
            D.shutdown(self.env)


def train(cfg, resume_command: str | None = None) -> RunResult:
    """Run training from a composed config (with `run_dir`): how it ended, and the best validation value."""
    trainer = Trainer(cfg)
    try:
        trainer.fit()
        status, code = "completed", 0
    except TrainingInterrupted:
        command = resume_command or f"python train.py <same overrides> resume=auto hydra.run.dir={trainer.run_dir}"
        trainer.log.info(f"stopped at epoch {trainer.state.epoch + 1}, step {trainer.state.step}: wrote "
                         f"{trainer.ckpt_dir / 'last.pt'}; continue with: {command}")
        status, code = "stopped", 0
    except NonFiniteLoss as e:
        trainer.log.info(f"error: {e}; stopped without writing a checkpoint (the last good one is in "
                         f"{trainer.ckpt_dir}); lower optim.lr, set optim.clip_grad_norm, or use trainer.precision=32")
        status, code = "failed", 1
    finally:
        trainer.close()
    return RunResult(code, trainer.state.best, status, dict(trainer.state.metrics),
                     None if code == 0 else "non-finite loss")
