"""Running sums under names: device tensors are summed on the device, Python numbers (image counts) on the
host, and both are read back (and summed over ranks) in one go.

Adding to a meter never waits for the device and adds no device work for host numbers; `read()` is the one
host sync (and, under DDP, the one collective) per log interval.
"""
from __future__ import annotations

import time

import torch

from .. import distributed as D


class DeviceMeters:
    def __init__(self, names: tuple[str, ...], device):
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.sums = torch.zeros(len(self.names), device=device, dtype=torch.float64)
        self.host = [0.0] * len(self.names)

    def add(self, **values) -> None:
        """Add tensors (on the device) or Python numbers to the named sums."""
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                self.sums[self.index[name]] += value
            else:
                self.host[self.index[name]] += value

    def add_from(self, other: "DeviceMeters") -> None:
        self.sums += other.sums
        self.host = [a + b for a, b in zip(self.host, other.host)]

    def reset(self) -> None:
        self.sums.zero_()
        self.host = [0.0] * len(self.names)

    def averages(self, env: D.DistEnv, prefix: str = "train_") -> dict[str, float]:
        """Loss per image and top-1/top-5 accuracy in percent, over all ranks."""
        totals = self.read(env)
        n = max(totals["images"], 1)
        return {f"{prefix}loss": totals["loss"] / n, f"{prefix}top1": 100 * totals["top1"] / n,
                f"{prefix}top5": 100 * totals["top5"] / n}

    def read(self, env: D.DistEnv | None = None) -> dict[str, float]:
        """The sums over all ranks, as floats."""
        totals = self.sums + torch.tensor(self.host, dtype=torch.float64).to(self.sums.device, non_blocking=True)
        if env is not None:
            D.all_reduce_sum(totals, env)
        return dict(zip(self.names, totals.tolist()))


class IntervalTimer:
    """Images per second and the fraction of time spent waiting for data, per log interval."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.wait = self.total_wait = 0.0
        self.images = 0

    def data_arrived(self) -> None:
        self.wait += time.perf_counter() - self.last

    def tick(self) -> None:
        self.last = time.perf_counter()

    def end_interval(self, world_size: int) -> tuple[float, float]:
        """(images per second over all ranks, data-wait fraction) since the last call; starts a new interval."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        result = self.images * world_size / elapsed, self.wait / elapsed
        self.total_wait += self.wait
        self.wait, self.images, self.start = 0.0, 0, time.perf_counter()
        return result
