"""`data=synthetic`: random uint8 batches made on the device, for pure-compute benchmarks."""
from __future__ import annotations

import torch


class SyntheticLoader:
    """Yields `batches` identical-shape random batches per epoch; nothing is read or decoded."""

    def __init__(self, batches: int, batch_size: int, size: int, num_classes: int, device, seed: int = 0,
                 world_size: int = 1):
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.images = torch.randint(0, 256, (batch_size, 3, size, size), generator=g, dtype=torch.uint8).to(device)
        self.targets = torch.randint(0, num_classes, (batch_size,), generator=g).to(device)
        self.batches = batches
        self.start = 0
        self.global_batch = batch_size * world_size
        self.dataset_size = batches * batch_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: samples already trained this epoch by all ranks."""
        self.start = min(start // self.global_batch, self.batches)

    def __len__(self) -> int:
        return self.batches - self.start

    def __iter__(self):
        for _ in range(len(self)):
            yield self.images, self.targets, [], None
