"""`data.workers`: how many loader processes (or DALI threads) a command uses."""
from __future__ import annotations

import os

from common.checks import check_number, get

MAX_AUTO_WORKERS = 8


def check_workers(cfg, key: str = "data.workers") -> None:
    """`data.workers`: a number of loader processes, or auto."""
    if get(cfg, key) != "auto":
        check_number(cfg, key, integer=True, low=0)


def loader_workers(setting) -> int:
    """Loader processes for `data.workers`: the number given, or for `auto` the cores this process may run on,
    shared by the processes of this node (torchrun's LOCAL_WORLD_SIZE), at most MAX_AUTO_WORKERS."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
