"""Stopping a run cleanly: SIGTERM, SIGINT and SIGUSR1 ask for a stop after the current step, and all
ranks agree on when to stop so that they leave the loop at the same step.
"""
from __future__ import annotations

import signal

from common.signals import STOP_SIGNALS

from .. import distributed as D


class TrainingInterrupted(Exception):
    """A requested stop: the current step finished and last.pt was written."""


class StopRequest:
    """A flag set by a stop signal, by `request()` (tests, tools) or by a hook; read at safe points."""

    def __init__(self):
        self.requested = False
        self.signal: int | None = None  # the first stop signal received
        self._previous: dict = {}

    def request(self) -> None:
        self.requested = True

    def _on_signal(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.requested = True
        self.signal = self.signal or signum

    def __enter__(self) -> "StopRequest":
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def due(self, step: int, every: int, env: D.DistEnv, device) -> bool:
        """Between optimizer steps: stop now? Under DDP the ranks agree once every `every` steps (where the loop
        syncs anyway), so that all stop at the same step."""
        if not env.enabled:
            return self.requested
        return step % every == 0 and self.agreed(env, device)

    def agreed(self, env: D.DistEnv, device) -> bool:
        """True on every rank when any rank was asked to stop (one collective under DDP)."""
        return D.any_rank(self.requested, env, device)
