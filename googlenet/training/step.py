"""One training step: the batch on the device, forward and backward with the aux losses, the update.

    loss = CE(main) + aux_weight * sum(CE(aux_i))   per micro-batch, scaled by 1/accumulate
    accumulate micro-batches (DDP all-reduces only on the last), then: lr from the schedule (x lr_mult per
    parameter group), optional clipping, the optimizer step through the gradient scaler, the EMA update.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from common.errors import UserError
from common.seeds import derive_seed
from data.device_ops import BatchNormalizer, adjust_photometric
from data.transforms import PhotometricDistortion

from .. import distributed as D
from ..runtime import Runtime
from .ema import ModelEMA
from .loss import InceptionLoss, topk_correct
from .meters import DeviceMeters
from .optim import build_optimizer, scaled_lr
from .position import Position
from .schedule import LRSchedule

# What a training step sums on the device (read once per log interval).
TRAIN_METERS = ("loss", "loss_main", "loss_aux1", "loss_aux2", "top1", "top5", "images")


def check_amp_scaling(optimizer, name: str, precision: str, device_type: str) -> None:
    """fp16 on a GPU needs an optimizer that unscales and skips steps on the device (torch's fused SGD does):
    for any other, torch's GradScaler reads the found-inf flag back to the host at every step."""
    if precision == "fp16" and device_type == "cuda" and not getattr(optimizer, "_step_supports_amp_scaling", False):
        raise UserError(f"optim={name} cannot take fp16's scaled gradients without a host sync at every step; use "
                        "runtime.precision=bf16 (it needs no scaling) or 32, or optim=sgd")


class TrainStep:
    """The training step of a model: built once per run (`build`), called per batch (`batch`)."""

    @classmethod
    def build(cls, cfg, model: nn.Module, runtime: Runtime, env: D.DistEnv, steps_per_epoch: int,
              global_batch: int) -> "TrainStep":
        """Optimizer (lr scaled to the global batch), schedule, gradient scaler, EMA, DDP and compile wrapping."""
        device = runtime.device
        peak_lr = scaled_lr(cfg.optim, global_batch)
        optimizer = build_optimizer(model, cfg.optim, peak_lr, device.type)
        check_amp_scaling(optimizer, cfg.optim.name, runtime.precision, device.type)
        train_model = D.wrap_ddp(model, env, device, cfg.dist)
        return cls(cfg, model=model, runtime=runtime, env=env,
                   train_model=torch.compile(train_model) if cfg.runtime.compile else train_model,
                   normalizer=BatchNormalizer(cfg.data.augment.lighting, runtime.channels_last).to(device),
                   optimizer=optimizer,
                   scaler=torch.amp.GradScaler(device.type, enabled=runtime.precision == "fp16"),
                   schedule=LRSchedule(cfg.schedule, peak_lr, steps_per_epoch, cfg.trainer.epochs, global_batch),
                   ema=ModelEMA(model, cfg.ema.decay) if cfg.ema.enabled else None)

    def __init__(self, cfg, *, model: nn.Module, train_model: nn.Module, normalizer: nn.Module, runtime: Runtime,
                 env: D.DistEnv, optimizer: torch.optim.Optimizer, scaler, schedule, ema):
        self.cfg, self.model, self.train_model, self.normalizer = cfg, model, train_model, normalizer
        self.runtime, self.env, self.optimizer, self.scaler, self.schedule, self.ema = (
            runtime, env, optimizer, scaler, schedule, ema)
        self.accumulate = cfg.optim.accumulate
        self.criterion = InceptionLoss(cfg.loss.aux_weight, cfg.loss.label_smoothing)
        self.photometric = PhotometricDistortion.from_augment(cfg.data.augment) is not None

    def to_device(self, images, targets, factors) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images on the device, with the photometric distortions their loader drew applied."""
        device = self.runtime.device
        images = images.to(device, non_blocking=True)
        if factors is not None and self.photometric:
            images = adjust_photometric(images, factors.to(device, non_blocking=True))
        return images, targets.to(device, non_blocking=True)

    def lighting_generator(self, micro_batches: int) -> torch.Generator | None:
        """PCA lighting noise drawn from a stream per rank and per micro-batch (reproducible, distinct over ranks)."""
        if self.cfg.data.augment.lighting <= 0:
            return None
        seed = derive_seed(self.cfg.seed, "lighting", self.env.rank, micro_batches)
        return torch.Generator(device=self.runtime.device).manual_seed(seed)

    def completes_step(self, position: Position) -> bool:
        """Whether the next batch is the last micro-batch of its accumulation group."""
        return position.micro_in_step + 1 == self.accumulate

    def forward_backward(self, images, targets, position: Position, meters: DeviceMeters) -> None:
        """The next micro-batch at `position`; its sums go to `meters`."""
        x = self.normalizer(images, self.lighting_generator(position.micro_batches(self.accumulate)))
        last_micro = self.completes_step(position)
        sync = self.train_model.no_sync() if self.env.enabled and not last_micro else contextlib.nullcontext()
        with sync:
            with self.runtime.autocast():
                outputs = self.train_model(x)
            loss, terms = self.criterion(outputs, targets)
            self.scaler.scale(loss / self.accumulate).backward()
        with torch.no_grad():
            top1, top5 = topk_correct(outputs.logits.detach(), targets)
            n = len(targets)
            aux = {f"loss_{k}": v * n for k, v in terms.items() if k.startswith("aux")}
            meters.add(loss=loss.detach() * n, loss_main=terms["main"] * n, top1=top1, top5=top5, images=n, **aux)

    def batch(self, images, targets, position: Position, schedule_steps: float, meters: DeviceMeters) -> bool:
        """One micro-batch (already on the device) at `position`: forward and backward, and the update when it
        completes an optimizer step (True then); `schedule_steps` is where the lr schedule stands."""
        self.forward_backward(images, targets, position, meters)
        if not self.completes_step(position):
            return False
        self.update(schedule_steps, position.step + 1)
        return True

    def update(self, schedule_steps: float, step: int) -> None:
        """The optimizer step at `schedule_steps`; `step` is the count of steps after it."""
        lr = self.schedule(schedule_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        clip = self.cfg.optim.clip_grad_norm
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema and step % self.cfg.ema.every == 0:
            self.ema.update(self.model)
