"""Samplers that shard by rank, reshuffle per epoch from the seed, and can resume mid-epoch."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields (index, epoch) pairs; this rank's share of a permutation fixed by (seed, epoch).

    Training (`pad=True`): like DistributedSampler, every rank gets ceil(N / world) samples (the list
    is padded by wrapping around) so all ranks run the same number of steps. Evaluation (`pad=False`):
    ranks take disjoint strided slices with no duplicates, so every image is counted exactly once.
    `set_epoch(epoch, start=k)` resumes mid-epoch: the first k samples of the epoch's (padded) order were
    trained by all ranks together, whatever the batch size and world size were then; the rest is shared
    out again (and padded again so that every rank still gets as many).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 pad: bool = True):
        self.size, self.seed, self.shuffle, self.pad = size, seed, shuffle, pad
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _pad(self, order: list[int]) -> list[int]:
        total = math.ceil(len(order) / self.world_size) * self.world_size
        return (order * math.ceil(total / max(len(order), 1)))[:total]

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.pad:
            order = self._pad(order)[self.start:]
            return self._pad(order)[self.rank::self.world_size] if order else []
        return order[self.start:][self.rank::self.world_size]

    def __iter__(self):
        return iter([(i, self.epoch) for i in self._indices()])

    def __len__(self) -> int:
        if self.pad:
            remaining = max(math.ceil(self.size / self.world_size) * self.world_size - self.start, 0)
            return math.ceil(remaining / self.world_size)
        return len(range(self.rank, max(self.size - self.start, 0), self.world_size))
