"""A progress line every half minute for long passes whose output is not a terminal (logs, nohup, schedulers),
where a progress bar would print nothing useful: batches done, images per second, and the time left."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

EVERY_SECONDS = 30.0


class ProgressLine:
    def __init__(self, what: str, total_batches: int, every: float = EVERY_SECONDS, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.every = what, total_batches, every
        self.stream, self.clock = stream or sys.stderr, clock
        self.start = self.last = clock()
        self.batches = self.images = 0

    def update(self, images: int) -> None:
        """One more batch of `images` done."""
        self.batches += 1
        self.images += images
        now = self.clock()
        if now - self.last >= self.every and self.batches < self.total:
            self.last = now
            elapsed = now - self.start
            left = elapsed / self.batches * (self.total - self.batches)
            print(f"{self.what}: batch {self.batches}/{self.total}, {self.images} images, "
                  f"{self.images / elapsed:.1f} images/s, about {_duration(left)} left", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
