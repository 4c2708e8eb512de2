"""Watch a stretch of code for the operations that make the host wait for the device.

On CUDA, torch's own sync debug mode reports every synchronising call (a value read back, a copy to pageable
memory, a stream synchronisation) as a warning. On the CPU nothing ever waits, so the same operators are
recorded instead, with a dispatch mode that sees each one: a value read back to the host, `nonzero` (whose
output size only the host knows), and a tensor made from Python numbers (a copy from host memory on a GPU).
Either way, `offenders` lists each one with the line of this project's code that caused it.
"""
from __future__ import annotations

import traceback
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

WATCHED_OPS = {
    "aten._local_scalar_dense.default": "a value read back to the host (.item(), bool(), float(), int())",
    "aten.nonzero.default": "nonzero (its output size is only known on the host)",
    "aten.lift_fresh.default": "a tensor made from Python numbers (a copy from host memory)",
}
OUR_CODE = ("/googlenet/", "/data/", "/common/")


def _our_line(stack) -> str:
    ours = [f for f in stack if any(part in f.filename for part in OUR_CODE) and not f.filename.endswith(__file__)]
    return f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "outside this project"


class _RecordedOps(TorchDispatchMode):
    def __init__(self, offenders: list[str]):
        super().__init__()
        self.offenders = offenders

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in WATCHED_OPS:
            self.offenders.append(f"{WATCHED_OPS[str(func)]} at {_our_line(traceback.extract_stack())}")
        return func(*args, **(kwargs or {}))


class HostSyncWatch:
    """`with HostSyncWatch(device) as watch: ...`, or `start()` / `stop()` around a stretch that is not one
    block (a training loop's steps after warm-up); then `watch.offenders`."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.offenders: list[str] = []
        self._mode, self._warnings, self.watching = None, None, False

    def start(self) -> "HostSyncWatch":
        if self.watching:
            return self
        self.watching = True
        if self.cuda:
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        else:
            self._mode = _RecordedOps(self.offenders)
            self._mode.__enter__()
        return self

    def stop(self) -> None:
        """End the watch (again, or without a start: nothing to do)."""
        if not self.watching:
            return
        self.watching = False
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(None, None, None)
            self.offenders += [f"{w.message} at {w.filename}:{w.lineno}" for w in self._caught
                               if "synchroniz" in str(w.message).lower()]
        else:
            self._mode.__exit__(None, None, None)

    def __enter__(self) -> "HostSyncWatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
