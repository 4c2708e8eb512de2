"""The training loop. `Trainer` builds a run from its config, then runs it epoch by epoch:

    build: runtime and process group -> run dir (lock, log) -> data -> model (finetune start, SyncBN)
           -> TrainStep (optimizer, schedule, scaler, EMA, DDP) -> resume from a checkpoint if asked
    fit:   per epoch: train (batches through TrainStep, the position advanced, meters logged every
           trainer.log_every steps, stop requests agreed between ranks), save last.pt, validate the raw and
           the EMA weights, keep best.pt / epoch_<N>.pt, print the epoch line

It owns the run's position and outcome (`RunState`) and the run's files; everything else has its own owner:
TrainStep the optimizer, scaler, EMA and wrapped model; RunLog the console, train.log and TensorBoard;
StopRequest the signals. `report` turns values into log lines.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from omegaconf import open_dict
from torch import nn

from common.checks import check_bool, check_choice, check_number
from common.errors import UserError
from common.seeds import SEED_LIMIT, derive_seed
from data.loaders import build_data

from .. import distributed as D
from ..checkpoint import RunCheckpoints, finite
from ..models.layers import AUX_HEADS
from ..models.registry import build_from_config
from ..provenance import provenance
from ..runtime import seed_everything, start
from .finetune import keep_frozen_in_eval, prepare_start
from .meters import DeviceMeters, IntervalTimer
from .report import describe, log_epoch, log_image_grid, log_interval, log_validation, report_skipped, write_hparams
from .rundir import RunLock, check_not_a_system_folder, clean_leftovers, refuse_existing_checkpoints, write_run_config
from .runlog import RunLog
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
    def __init__(self, cfg, on_run_dir: Callable[[], None] | None = None):
        self.cfg = cfg
        self.on_run_dir = on_run_dir  # called on rank 0 once the run is built (its run dir locked, resumed)
        self.env, self.lock, self.log, self.run_dir, self.data = None, None, None, None, None
        self.created_config, self.closed = False, False
        self.state = RunState()
        self.stop = StopRequest()
        # hooks["step"] run after every optimizer step, hooks["val_batch"] after every validation batch
        self.hooks: dict[str, list[Callable[[Trainer], None]]] = {"step": [], "val_batch": []}
        self.replaced: list[str] = []  # unreadable training images replaced this epoch
        try:
            self.build_runtime()
            self.build_output()
            self.build_data()
            self.build_model()
            self.build_optimization()
            self.resume_if_asked()
            if self.env.is_main and self.on_run_dir:  # the run is this run's, resumed or new
                self.on_run_dir()
        except BaseException:
            self.close(started=False)  # the lock, the log files and the process group of a run that never started
            raise

    def build_runtime(self) -> None:
        self.env, self.runtime = start(self.cfg.runtime, self.cfg.dist)
        self.device = self.runtime.device

    def build_output(self) -> None:
        self.run_dir = Path(D.broadcast_string(self.cfg.run_dir, self.env))
        self.ckpt_dir = self.run_dir / "checkpoints"
        check_not_a_system_folder(self.run_dir)
        self.lock = RunLock(self.run_dir).acquire() if self.env.is_main else None
        self.resume_from = resume_path(self.cfg.resume, self.ckpt_dir, D.launched_by_a_scheduler())
        if self.resume_from is None:
            refuse_existing_checkpoints(self.run_dir, self.cfg.trainer.overwrite)
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
        self.frozen = prepare_start(model, cfg.finetune, self.log)  # fine-tuning: weights to start from, frozen part
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
        self.train_step = TrainStep.build(cfg, self.model, self.runtime, self.env, self.steps_per_epoch,
                                          self.global_batch)

    def resume_if_asked(self) -> None:
        path = self.resume_from
        if path is None:
            if self.cfg.resume == "auto" or D.launched_by_a_scheduler():
                self.log.info(f"resume=auto: no {self.ckpt_dir / 'last.pt'} yet, starting from scratch")
            return
        step = self.train_step
        self.state, notes = resume_from(path, self.cfg, self.data.classes, model=self.model, ema=step.ema,
                                        optimizer=step.optimizer, scaler=step.scaler, env=self.env,
                                        device=self.device)
        s = self.state
        self.log.info(f"resumed from {path}: epoch {s.epoch + 1}, {s.samples_in_epoch} samples into it, step "
                      f"{s.step}" + "".join(f"; {note}" for note in notes))

    def fit(self) -> dict[str, float]:
        cfg = self.cfg
        describe(self.log, cfg, model=self.model, data=self.data, runtime=self.runtime, world_size=self.env.world_size,
                 global_batch=self.global_batch, peak_lr=self.train_step.schedule.peak,
                 warmup_epochs=self.train_step.schedule.warmup_epochs, steps_per_epoch=self.steps_per_epoch,
                 run_dir=self.run_dir)
        if self.env.is_main:
            self.created_config = not (self.run_dir / "config.yaml").exists()
            write_run_config(self.run_dir, cfg)
        epochs = cfg.trainer.epochs
        with self.stop:
            if self.state.pending_validation:  # the last run stopped after saving an epoch, before validating it
                self.finish_epoch()
            if self.state.epoch >= epochs:
                self.log.info(f"nothing to do: the checkpoint already finished {epochs} epochs")
            while self.state.epoch < epochs:
                self.run_epoch()
                if self.state.epoch < epochs and self.stop.agreed(self.env, self.device):
                    raise TrainingInterrupted()  # last.pt was just written
        write_hparams(self.log, cfg, self.state.metrics, self.state.step, peak_lr=self.train_step.schedule.peak,
                      global_batch=self.global_batch, precision=self.runtime.precision)
        return self.state.metrics

    def run_epoch(self) -> None:
        s, t = self.state, self.cfg.trainer
        start = time.perf_counter()
        metrics = self.train_epoch()
        metrics["epoch_time"] = time.perf_counter() - start
        s.next_epoch()
        s.metrics = metrics
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
        t, s, step = self.cfg.trainer, self.state, self.train_step
        self.data.train.set_epoch(s.epoch, start=s.samples_in_epoch)
        step.train_model.train()
        keep_frozen_in_eval(self.model, self.frozen)
        step.normalizer.train()
        interval, epoch = DeviceMeters(TRAIN_METERS, self.device), DeviceMeters(TRAIN_METERS, self.device)
        timer = IntervalTimer()
        s.start_epoch(self.micro_batch)
        first_batch = s.batch_in_epoch
        samples_per_epoch = self.batches_per_epoch * self.micro_batch
        bar = self.log.bar(self.batches_per_epoch, f"epoch {s.epoch + 1}/{t.epochs}", initial=first_batch)
        for images, targets, replaced, factors in self.data.train:
            if s.batch_in_epoch >= self.batches_per_epoch:
                break
            timer.data_arrived()
            self.replaced.extend(replaced)
            images, targets = step.to_device(images, targets, factors)
            if s.step == 0 and s.batch_in_epoch == first_batch and t.log_images:
                log_image_grid(self.log, images, s.step)
            schedule_steps = s.schedule_steps(self.steps_per_epoch, samples_per_epoch)
            stepped = step.batch(images, targets, s, schedule_steps, interval)
            s.after_batch(stepped, self.global_batch)
            timer.images += len(targets)
            bar.update(1)
            if stepped:
                if s.step % t.log_every == 0 or s.batch_in_epoch == self.batches_per_epoch:
                    epoch.add_from(interval)
                    self.log_train(interval, timer, bar)
                    interval.reset()
                self.after_step(bar)
            timer.tick()
        bar.close()
        epoch.add_from(interval)
        return {**epoch.averages(self.env), "data_wait": timer.total_wait}

    def after_step(self, bar) -> None:
        """Hooks, periodic checkpoints and stop requests, between optimizer steps."""
        for hook in self.hooks["step"]:
            hook(self)
        if self.state.batch_in_epoch >= self.batches_per_epoch:
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
        lr = self.train_step.optimizer.param_groups[0]["lr"]
        log_interval(self.log, values, self.state.step, lr, self.num_aux, self.device,
                     *timer.end_interval(self.env.world_size), bar)

    def end_epoch(self, metrics: dict[str, float]) -> None:
        s = self.state
        key = f"{'val_ema' if self.train_step.ema else 'val'}_{self.cfg.trainer.best_metric}"
        improved = key in metrics and s.is_better(metrics[key], key.endswith("loss"))
        if improved:
            s.best = metrics[key]
        self.checkpoints.save_epoch(self.checkpoint(), s.epoch, improved, self.cfg.trainer.keep_last)
        log_epoch(self.log, metrics, s.epoch, self.cfg.trainer.epochs, s.step, self.replaced)
        self.replaced = []

    def checkpoint(self) -> dict:
        """The checkpoint dict of now; never of non-finite weights (every rank holds the same weights)."""
        step = self.train_step
        if not finite([self.model] + ([step.ema.module] if step.ema else [])):
            raise NonFiniteLoss(f"the weights became non-finite at step {self.state.step}")
        return make_checkpoint(self.state, model=self.model, ema=step.ema, optimizer=step.optimizer,
                               scaler=step.scaler, cfg=self.cfg, classes=self.data.classes, names=self.data.names,
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
        ema = self.train_step.ema
        models = {"val": self.model, **({"val_ema": ema.module} if ema else {})}
        results, skipped = validate_models(models, self.data.val, self.train_step.normalizer, self.runtime, self.env,
                                           self.log, self.cfg.trainer.limit_val_batches, on_batch=after_batch)
        report_skipped(self.log, skipped, "skipped", self.state.epoch, self.state.step)
        log_validation(self.log, results, self.state.step)
        return {f"{prefix}_{k}": v for prefix, values in results.items() for k, v in values.items()}

    def wrote_checkpoints(self) -> bool:
        return self.run_dir is not None and any(self.ckpt_dir.glob("*.pt"))

    def close(self, started: bool = True) -> None:
        """Release what the run holds; a run that never started (or ended before any checkpoint was in its
        run dir) also removes the lock and the config.yaml it created, so that its folder can go."""
        if self.closed:
            return
        self.closed = True
        if self.log:
            self.log.close()
        if self.data:
            self.data.close()
        if not started and self.created_config:
            (self.run_dir / "config.yaml").unlink(missing_ok=True)
        if self.lock:
            self.lock.release(remove=not started)
        if self.env:
            D.shutdown(self.env)


def train(cfg, resume_command: str | None = None, on_run_dir: Callable[[], None] | None = None) -> RunResult:
    """Run training from a composed config (with `run_dir`): how it ended, and the best validation value.
    `on_run_dir` writes the command's own records once the run dir is this run's."""
    trainer = Trainer(cfg, on_run_dir)
    stop_signal = None
    try:
        trainer.fit()
        status, code = "completed", 0
    except TrainingInterrupted:
        command = resume_command or f"python train.py <same overrides> resume=auto hydra.run.dir={trainer.run_dir}"
        trainer.log.info(f"stopped at epoch {trainer.state.epoch + 1}, step {trainer.state.step}: wrote "
                         f"{trainer.ckpt_dir / 'last.pt'}; continue with: {command}")
        status, code = "stopped", 0
        stop_signal = trainer.stop.signal
    except NonFiniteLoss as e:
        last = trainer.ckpt_dir / "last.pt"
        kept = f"the last good one is {last}" if last.is_file() else "none was written before"
        trainer.log.info(f"error: {e}; stopped without writing a checkpoint ({kept}); lower optim.lr, set "
                         "optim.clip_grad_norm, or use runtime.precision=32")
        status, code = "failed", 1
    except UserError:  # found mid-run (e.g. no readable image): a run dir without checkpoints goes, as at start
        trainer.close(started=trainer.wrote_checkpoints())
        raise
    finally:
        trainer.close()
    return RunResult(code, trainer.state.best, status, dict(trainer.state.metrics),
                     None if code == 0 else "non-finite loss", provenance(trainer.device, trainer.env.world_size),
                     stop_signal)
