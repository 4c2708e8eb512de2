"""Learning-rate schedules as a pure function of the optimizer step: warmup, then cosine or step decay."""
from __future__ import annotations

import bisect
import math

from common.checks import check_choice, check_number, check_number_list

SCHEDULES = ("cosine", "step", "multistep")


def check_schedule_config(cfg) -> None:
    """The `schedule` group's keys (cfg is the whole config)."""
    s = "schedule"
    check_choice(cfg, f"{s}.name", SCHEDULES)
    check_choice(cfg, f"{s}.interval", ["step", "epoch"])
    if cfg.schedule.warmup_epochs != "auto":
        check_number(cfg, f"{s}.warmup_epochs", low=0)
    check_number(cfg, f"{s}.warmup_start", low=0, high=1)
    if cfg.schedule.name == "cosine":
        check_number(cfg, f"{s}.min_lr", low=0, high=1)
    elif cfg.schedule.name == "step":
        check_number(cfg, f"{s}.step_epochs", low=0, low_open=True)
        check_number(cfg, f"{s}.gamma", low=0, low_open=True, high=1)
    else:
        check_number_list(cfg, f"{s}.milestones")
        check_number(cfg, f"{s}.gamma", low=0, low_open=True, high=1)


# Goyal et al. 2017 ("Accurate, Large Minibatch SGD"): with the lr scaled linearly to the batch, a linear warmup
# over 5 epochs keeps large batches as accurate as 256; at 256 the usual recipes need none.
AUTO_WARMUP_EPOCHS, AUTO_WARMUP_FROM_BATCH, AUTO_WARMUP_FULL_BATCH = 5.0, 256, 1024


def warmup_epochs(setting, global_batch: int) -> float:
    """`schedule.warmup_epochs`: a number, or auto: none up to a global batch of 256, 5 epochs from 1024 on,
    and in between in proportion to log2 of the batch (2.5 epochs at 512)."""
    if setting != "auto":
        return float(setting)
    span = math.log2(AUTO_WARMUP_FULL_BATCH / AUTO_WARMUP_FROM_BATCH)
    fraction = min(1.0, max(0.0, math.log2(global_batch / AUTO_WARMUP_FROM_BATCH) / span))
    return AUTO_WARMUP_EPOCHS * fraction


class LRSchedule:
    """lr(step) for `epochs` x `steps_per_epoch` optimizer steps.

    Warmup is always linear per step (from warmup_start x peak). After it, `cosine` anneals to
    min_lr x peak, `step` multiplies by gamma every step_epochs, `multistep` by gamma at each milestone.
    With interval=epoch the decay only changes at epoch boundaries (the paper's "every 8 epochs").
    """

    def __init__(self, cfg, peak_lr: float, steps_per_epoch: int, epochs: int, global_batch: int = 256):
        self.cfg, self.peak = cfg, peak_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = self.steps_per_epoch * epochs
        self.warmup_epochs = warmup_epochs(cfg.warmup_epochs, global_batch)
        self.warmup = round(self.warmup_epochs * self.steps_per_epoch)

    def decay_factor(self, epoch: float) -> float:
        c = self.cfg
        if c.name == "cosine":
            warm = self.warmup / self.steps_per_epoch
            span = max(self.total / self.steps_per_epoch - warm, 1e-12)
            progress = min(max((epoch - warm) / span, 0.0), 1.0)
            return c.min_lr + (1 - c.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        if c.name == "step":
            return c.gamma ** math.floor(epoch / c.step_epochs + 1e-9)
        if c.name == "multistep":
            return c.gamma ** bisect.bisect_right(sorted(c.milestones), epoch + 1e-9)
        raise ValueError(c.name)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            start = self.cfg.warmup_start
            return self.peak * (start + (1 - start) * step / self.warmup)
        epoch = step / self.steps_per_epoch
        if self.cfg.interval == "epoch":
            epoch = math.floor(epoch + 1e-9)
        return self.peak * self.decay_factor(epoch)
