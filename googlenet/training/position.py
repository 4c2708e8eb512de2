"""Where a training run is: the one object the loop, the schedule, the random streams and a resume read."""
from __future__ import annotations

from dataclasses import dataclass

# What a checkpoint keeps of the position (the in-epoch batch counters follow from them at any batch size).
SAVED = ("epoch", "samples_in_epoch", "step")


@dataclass
class Position:
    epoch: int = 0              # the epoch being trained (or next to be), counted from 0
    samples_in_epoch: int = 0   # samples of `epoch` trained so far, by all ranks together (a resume starts here)
    step: int = 0               # optimizer steps taken so far
    batch_in_epoch: int = 0     # batches of `epoch` done at this run's global batch size
    micro_in_step: int = 0      # batches of the current accumulation group done (0 .. optim.accumulate-1)

    def start_epoch(self, global_micro_batch: int) -> None:
        """Count this epoch's batches from `samples_in_epoch` (a resume with another batch size lands on the
        batch that holds the first unseen sample); an accumulation group always starts here."""
        self.batch_in_epoch = self.samples_in_epoch // global_micro_batch
        self.micro_in_step = 0

    def micro_batches(self, accumulate: int) -> int:
        """Micro-batches trained so far in whole steps plus this group's: the index of per-batch random streams."""
        return self.step * accumulate + self.micro_in_step

    def schedule_steps(self, steps_per_epoch: int, samples_per_epoch: int) -> float:
        """Optimizer steps so far, counted in the current epoch length: what the lr schedule reads (exact when the
        batch size never changed; a changed batch size moves along the same curve by epochs)."""
        return self.epoch * steps_per_epoch + self.samples_in_epoch * steps_per_epoch / samples_per_epoch

    def after_batch(self, stepped: bool, global_batch: int) -> None:
        """One batch done; `stepped`: it completed an optimizer step of `global_batch` samples."""
        self.batch_in_epoch += 1
        if stepped:
            self.step += 1
            self.samples_in_epoch += global_batch
            self.micro_in_step = 0
        else:
            self.micro_in_step += 1

    def next_epoch(self) -> None:
        self.epoch, self.samples_in_epoch, self.batch_in_epoch, self.micro_in_step = self.epoch + 1, 0, 0, 0

    def saved(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in SAVED}
