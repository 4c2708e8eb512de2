"""The training loop: aux losses, AMP, EMA, validation, checkpoints, resume, signals, logging."""
from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from data.device_decode import EncodedBatch
from data.device_ops import BatchNormalizer
from data.loaders import DataBundle, build_data

from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint
from .ema import ModelEMA
from .errors import UserError
from .loss import InceptionLoss, topk_correct
from .models.layers import AUX_HEADS
from .models.registry import build_model
from .models.summary import summarize
from .optim import build_optimizer, scaled_lr
from .runlog import RunLog
from .schedule import LRSchedule

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT: the current step finished and last.pt was written."""


class NonFiniteLoss(Exception):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu")
    return torch.device(name)


def model_options(model_cfg) -> dict:
    """The preset's constructor options from the `model` config group."""
    options = OmegaConf.to_container(model_cfg, resolve=True)
    options.pop("name")
    options.pop("input_size")
    return options


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        t = cfg.trainer
        device = resolve_device(str(t.device))
        self.env = D.init_distributed(cfg.dist, device.type)
        if self.env.enabled and device.type == "cuda":
            device = torch.device("cuda", self.env.local_rank)
        self.device = device
        self.run_dir = Path(D.broadcast_string(cfg.run_dir, self.env))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.log = RunLog(self.run_dir, enabled=self.env.is_main, progress=t.progress)
        self.autocast_dtype = PRECISIONS[str(t.precision)]
        if self.autocast_dtype is torch.float16 and device.type == "cpu":
            raise UserError("trainer.precision=fp16 needs a CUDA device; use trainer.precision=bf16 on CPU")
        # channels_last is faster on CUDA and, measured on a 2-core x86 CPU (oneDNN), there too
        self.channels_last = device.type in ("cuda", "cpu") if t.channels_last == "auto" else bool(t.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(t.cudnn_benchmark)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.data: DataBundle = build_data(cfg.data, cfg.seed, self.env.rank, self.env.world_size, device)

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg.model.name, **model_options(cfg.model))
        if cfg.dist.sync_bn and self.env.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        self.ema = ModelEMA(self.model, cfg.ema.decay) if cfg.ema.enabled else None
        self.num_aux = sum(getattr(model, name, None) is not None for name in AUX_HEADS)

        accumulate = cfg.optim.accumulate
        self.global_batch = cfg.data.batch_size * self.env.world_size * accumulate
        self.peak_lr = scaled_lr(cfg.optim, self.global_batch)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.peak_lr, device.type)
        full = len(self.data.train)
        limit = t.limit_train_batches
        self.batches_per_epoch = (min(full, limit) if limit else full) // accumulate * accumulate
        if self.batches_per_epoch == 0:
            raise UserError(f"an epoch has {full} batch(es), fewer than optim.accumulate={accumulate}; "
                            "lower optim.accumulate or data.batch_size")
        self.steps_per_epoch = self.batches_per_epoch // accumulate
        self.schedule = LRSchedule(cfg.schedule, self.peak_lr, self.steps_per_epoch, t.epochs)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.autocast_dtype is torch.float16)
        self.criterion = InceptionLoss(cfg.loss.aux_weight, cfg.loss.label_smoothing)
        self.normalizer = BatchNormalizer(cfg.data.augment.lighting, self.channels_last).to(device)

        self.train_model: nn.Module = self.model
        if self.env.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.dist.find_unused_parameters, static_graph=cfg.dist.static_graph)
        if t.compile:
            self.train_model = torch.compile(self.train_model)

        self.epoch = 0            # the epoch being (or next to be) trained
        self.batch_in_epoch = 0   # batches of `epoch` already trained (mid-epoch resume)
        self.step = 0             # optimizer steps so far
        self.best: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.skipped: list[str] = []
        self.stop_requested = False
        self._maybe_resume()

    # ------------------------------------------------------------------------------------ set-up output

    def describe(self) -> None:
        cfg = self.cfg
        self.log.info(OmegaConf.to_yaml(cfg).rstrip())
        if self.env.is_main:
            self.log.info(str(summarize(self.model, cfg.data.crop_size, cfg.model.name)))
        self.log.info(
            f"data: {cfg.data.name}, {self.data.train_size:,} train / {self.data.val_size:,} val images, "
            f"{len(self.data.classes)} classes")
        self.log.info(
            f"processes: {self.env.world_size}, device: {self.device}, precision: {cfg.trainer.precision}; "
            f"global batch {self.global_batch} = {cfg.data.batch_size} x {self.env.world_size} process(es) x "
            f"{cfg.optim.accumulate} accumulation; lr {self.peak_lr:.4g} ({cfg.optim.lr:g} at "
            f"{cfg.optim.base_batch}, {cfg.optim.scale_lr} scaling); {self.steps_per_epoch} steps per epoch")
        self.log.info(f"run dir: {self.run_dir}")
        if self.env.is_main:
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    # -------------------------------------------------------------------------------------- checkpoints

    def _state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "best": self.best, "metrics": self.last_metrics, "rng": rng,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "classes": list(self.data.classes), "class_names": list(self.data.names),
        }

    def save(self, name: str = "last.pt", state: dict | None = None) -> Path | None:
        if not self.env.is_main:
            return None
        return save_checkpoint(state or self._state(), self.ckpt_dir / name)

    def _maybe_resume(self) -> None:
        resume = self.cfg.resume
        if resume is None and D.launched_by_torchrun():
            resume = "auto"  # an elastic restart continues from the run's last.pt
        if resume is None:
            return
        path = self.ckpt_dir / "last.pt" if resume == "auto" else Path(str(resume)).expanduser()
        if resume == "auto" and not path.is_file():
            self.log.info(f"resume=auto: no {path} yet, starting from scratch")
            return
        state = load_checkpoint(path)
        saved = state["config"]["model"]
        if saved["name"] != self.cfg.model.name or saved["num_classes"] != self.cfg.model.num_classes:
            raise UserError(f"checkpoint {path} is for model {saved['name']} with {saved['num_classes']} classes, "
                            f"not {self.cfg.model.name} with {self.cfg.model.num_classes}; pass the matching model=")
        if list(state["classes"]) != list(self.data.classes):
            raise UserError(f"checkpoint {path} was trained on different classes than {self.cfg.data.name}'s; "
                            "resume with the same dataset")
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.best, self.last_metrics = state["best"], state["metrics"]
        if self.env.world_size == 1:  # the exact random streams of a single-process run
            torch.set_rng_state(state["rng"]["torch"])
            random.setstate(state["rng"]["python"])
            if "cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        else:  # distinct, reproducible dropout streams per rank
            torch.manual_seed(self.cfg.seed * 1_000 + self.env.rank + 7919 * self.step)
        self.log.info(f"resumed from {path}: epoch {self.epoch + 1}, batch {self.batch_in_epoch}, step {self.step}")

    # ------------------------------------------------------------------------------------------- signals

    def _install_signal_handlers(self):
        previous = {}

        def request_stop(signum, frame):
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self.stop_requested = True

        for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                try:
                    previous[sig] = signal.signal(sig, request_stop)
                except ValueError:  # not the main thread
                    pass
        return previous

    # ------------------------------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        self.describe()
        previous = self._install_signal_handlers()
        epochs = self.cfg.trainer.epochs
        try:
            if self.epoch >= epochs:
                self.log.info(f"nothing to do: the checkpoint already finished {epochs} epochs")
            while self.epoch < epochs:
                epoch_start = time.perf_counter()
                train_metrics = self.train_epoch()
                self.epoch += 1
                self.batch_in_epoch = 0
                metrics = {**train_metrics, "epoch_time": time.perf_counter() - epoch_start}
                if self.epoch % self.cfg.trainer.val_every == 0 or self.epoch == epochs:
                    metrics.update(self.validate_all())
                self.last_metrics = metrics
                self._end_of_epoch(metrics)
                if self.epoch < epochs and D.any_rank(self.stop_requested, self.env, self.device):
                    raise TrainingInterrupted()  # last.pt was just written
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._write_hparams()
        return self.last_metrics

    def _end_of_epoch(self, metrics: dict[str, float]) -> None:
        self.log.scalars({"time/epoch_seconds": metrics["epoch_time"]}, self.step)
        if self.skipped:
            self.log.info(f"epoch {self.epoch}: skipped {len(self.skipped)} unreadable image(s), replaced by "
                          f"other samples: {', '.join(self.skipped[:10])}{' ...' if len(self.skipped) > 10 else ''}")
            self.log.scalars({"data/skipped_images": len(self.skipped)}, self.step)
            self.skipped = []
        line = [f"epoch {self.epoch}/{self.cfg.trainer.epochs}", f"train loss {metrics['train_loss']:.4f}",
                f"top1 {metrics['train_top1']:.2f}%"]
        key = self._best_key()
        improved = False
        if key in metrics:
            value = metrics[key]
            improved = self.best is None or (value < self.best if key.endswith("loss") else value > self.best)
            if improved:
                self.best = value
            line += [f"val top1 {metrics['val_top1']:.2f}% top5 {metrics['val_top5']:.2f}%"]
            if "val_ema_top1" in metrics:
                line += [f"ema top1 {metrics['val_ema_top1']:.2f}%"]
        state = self._state()
        self.save("last.pt", state)
        if improved:
            self.save("best.pt", state)
        keep = self.cfg.trainer.keep_last
        if keep > 0 and self.env.is_main:
            self.save(f"epoch_{self.epoch}.pt", state)
            (self.ckpt_dir / f"epoch_{self.epoch - keep}.pt").unlink(missing_ok=True)
        line.append(f"{metrics['epoch_time']:.1f}s")
        self.log.info(" | ".join(line))
        self.log.flush()

    def _best_key(self) -> str:
        prefix = "val_ema" if self.ema else "val"
        return f"{prefix}_{self.cfg.trainer.best_metric}"

    def _lighting_generator(self, index: int) -> torch.Generator | None:
        if self.cfg.data.augment.lighting <= 0:
            return None
        return torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1_000_003 + index)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_epoch(self) -> dict[str, float]:
        cfg, t = self.cfg, self.cfg.trainer
        accumulate = cfg.optim.accumulate
        loader = self.data.train
        loader.set_epoch(self.epoch, start=self.batch_in_epoch)
        self.train_model.train()
        self.normalizer.train()
        dev = self.device
        # running sums on the device: loss, main, aux1, aux2, top1, top5, samples; read once per log interval
        sums = torch.zeros(7, device=dev, dtype=torch.float64)
        epoch_sums = torch.zeros(7, device=dev, dtype=torch.float64)
        zero, one = torch.zeros((), device=dev), torch.ones((), device=dev)
        data_wait = epoch_wait = 0.0
        interval_start = time.perf_counter()
        interval_images = 0
        bar = self.log.bar(self.batches_per_epoch, f"epoch {self.epoch + 1}/{t.epochs}", initial=self.batch_in_epoch)
        first_batch_logged = self.step > 0 or not t.log_images
        tick = time.perf_counter()
        index = self.batch_in_epoch
        for images, targets, skipped in loader:
            if index >= self.batches_per_epoch:
                break
            data_wait += time.perf_counter() - tick
            self.skipped.extend(p for joined in skipped for p in joined.split("\n") if p)
            if isinstance(images, EncodedBatch):  # data.decode=device
                encoded, images = images, images.decode(dev)
                self.skipped.extend(encoded.failed)
            else:
                images = images.to(dev, non_blocking=True)
            targets = targets.to(dev, non_blocking=True)
            if not first_batch_logged:
                self._log_image_grid(images)
                first_batch_logged = True
            x = self.normalizer(images, self._lighting_generator(self.step * accumulate + index % accumulate))
            last_micro = (index + 1) % accumulate == 0
            sync = self.train_model.no_sync() if self.env.enabled and not last_micro else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    outputs = self.train_model(x)
                loss, terms = self.criterion(outputs, targets)
                self.scaler.scale(loss / accumulate).backward()
            with torch.no_grad():
                top1, top5 = topk_correct(outputs.logits.detach(), targets)
                n = len(targets)
                sums += torch.stack([loss.detach(), terms["main"], terms.get("aux1", zero), terms.get("aux2", zero),
                                     top1 / n, top5 / n, one])
            interval_images += len(targets)
            index += 1
            bar.update(1)
            if last_micro:
                self._optimizer_step()
                self.batch_in_epoch = index
                if self.step % t.log_every == 0 or index == self.batches_per_epoch:
                    epoch_sums += sums
                    elapsed = time.perf_counter() - interval_start
                    self._log_train(sums, interval_images * self.env.world_size / max(elapsed, 1e-9),
                                    data_wait / max(elapsed, 1e-9), bar)
                    sums.zero_()
                    epoch_wait += data_wait
                    data_wait, interval_images, interval_start = 0.0, 0, time.perf_counter()
                every = t.checkpoint_every_steps
                if every and self.step % every == 0 and index < self.batches_per_epoch:
                    self.save("last.pt")
                if index < self.batches_per_epoch and self._should_stop():
                    self.save("last.pt")
                    bar.close()
                    raise TrainingInterrupted()
            tick = time.perf_counter()
        bar.close()
        epoch_sums += sums
        totals = D.all_reduce_sum(epoch_sums, self.env).tolist()
        n = max(totals[6], 1)
        return {"train_loss": totals[0] / n, "train_top1": 100 * totals[4] / n, "train_top5": 100 * totals[5] / n,
                "data_wait": epoch_wait + data_wait}

    def _should_stop(self) -> bool:
        if not self.env.enabled:
            return self.stop_requested
        # ranks agree once per log interval, where the loop syncs anyway, so that all stop at the same step
        if self.step % self.cfg.trainer.log_every != 0:
            return False
        return D.any_rank(self.stop_requested, self.env, self.device)

    def _optimizer_step(self) -> None:
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clip = self.cfg.optim.clip_grad_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema and self.step % self.cfg.ema.every == 0:
            self.ema.update(self.model)

    def _log_train(self, sums: torch.Tensor, images_per_sec: float, wait_fraction: float, bar) -> None:
        # the one host sync (and, under DDP, the one collective) per log interval; every rank sees the
        # same totals, so a non-finite loss stops all ranks together
        values = D.all_reduce_sum(sums.clone(), self.env).tolist()
        n = max(values[6], 1)
        loss = values[0] / n
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss became {loss} at step {self.step} (epoch {self.epoch + 1}); stopped without "
                f"overwriting the last good checkpoint in {self.ckpt_dir}; lower optim.lr, set "
                "optim.clip_grad_norm, or use trainer.precision=bf16/32")
        lr = self.optimizer.param_groups[0]["lr"]
        scalars = {"train/loss": loss, "train/loss_main": values[1] / n, "train/lr": lr,
                   "train/top1": 100 * values[4] / n, "train/top5": 100 * values[5] / n,
                   "perf/images_per_sec": images_per_sec, "perf/data_wait_fraction": wait_fraction}
        for i in range(self.num_aux):
            scalars[f"train/loss_aux{i + 1}"] = values[2 + i] / n
        if self.device.type == "cuda":
            scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.log.scalars(scalars, self.step)
        bar.set_postfix_str(f"loss {loss:.3f} lr {lr:.3g} {images_per_sec:.0f} img/s")

    def _log_image_grid(self, images: torch.Tensor) -> None:
        if not self.env.is_main:
            return
        from torchvision.utils import make_grid
        grid = make_grid(images[:32].float().cpu() / 255, nrow=8)
        self.log.images("train/augmented_batch", grid, self.step)

    # ----------------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Loss, top-1 and top-5 (single centre crop) over this rank's shard, reduced over ranks."""
        model.eval()
        self.normalizer.eval()
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # loss, top1, top5, count
        limit = self.cfg.trainer.limit_val_batches
        self.data.val.set_epoch(0)
        bar = self.log.bar(min(len(self.data.val), limit or len(self.data.val)), "validate")
        for i, (images, targets, skipped) in enumerate(self.data.val):
            if limit and i >= limit:
                break
            self.skipped.extend(p for joined in skipped for p in joined.split("\n") if p)
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            with self._autocast():
                logits = model(self.normalizer(images))
            loss = F.cross_entropy(logits.float(), targets, reduction="sum")
            top1, top5 = topk_correct(logits, targets)
            sums += torch.stack([loss.double(), top1.double(), top5.double(),
                                 torch.tensor(float(len(targets)), device=self.device, dtype=torch.float64)])
            bar.update(1)
        bar.close()
        loss, top1, top5, count = D.all_reduce_sum(sums, self.env).tolist()
        count = max(count, 1)
        return {"loss": loss / count, "top1": 100 * top1 / count, "top5": 100 * top5 / count, "images": count}

    def validate_all(self) -> dict[str, float]:
        metrics = {}
        results = {"val": self.validate(self.model)}
        if self.ema:
            results["val_ema"] = self.validate(self.ema.module)
        for prefix, values in results.items():
            self.log.scalars({f"{prefix}/{k}": v for k, v in values.items() if k != "images"}, self.step)
            metrics.update({f"{prefix}_{k}": v for k, v in values.items()})
        return metrics

    def _write_hparams(self) -> None:
        cfg = self.cfg
        hparams = {"model": cfg.model.name, "data": cfg.data.name, "optim": cfg.optim.name, "lr": self.peak_lr,
                   "global_batch": self.global_batch, "epochs": cfg.trainer.epochs,
                   "aux_weight": cfg.loss.aux_weight, "label_smoothing": cfg.loss.label_smoothing,
                   "ema": cfg.ema.enabled, "precision": str(cfg.trainer.precision)}
        final = {f"hparam/{k}": v for k, v in self.last_metrics.items()
                 if k.startswith("val") and not k.endswith("images")}
        if final:
            self.log.hparams(hparams, final, self.step)

    def close(self) -> None:
        self.log.close()
        D.shutdown(self.env)


def train(cfg) -> int:
    """Run training from a composed config; returns the process exit code."""
    trainer = Trainer(cfg)
    try:
        trainer.fit()
    except TrainingInterrupted:
        trainer.log.info(f"stopped at epoch {trainer.epoch + 1}, step {trainer.step}: wrote "
                         f"{trainer.ckpt_dir / 'last.pt'}; continue with: python train.py <same overrides> "
                         f"resume=auto hydra.run.dir={trainer.run_dir}")
        return 0
    except NonFiniteLoss as e:
        trainer.log.info(f"error: {e}")
        return 1
    finally:
        trainer.close()
    return 0
