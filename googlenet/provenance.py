"""Where a number came from: the code version, the libraries, the device, the processes and the command.

Recorded in every checkpoint, every `result.json` and every evaluation JSON, so that a result can be traced
back (and a surprising one compared against the run that produced the expected one).
"""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def provenance(device: torch.device | None = None, world_size: int = 1) -> dict:
    return {"code": code_version(), "python": platform.python_version(), **library_versions(),
            "device": device_name(device), "world_size": world_size, "command": shlex.join(sys.argv)}


@functools.lru_cache(maxsize=1)
def code_version() -> dict | None:
    """The git commit of this checkout and whether the tree differs from it; None outside a git checkout."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


@functools.lru_cache(maxsize=1)
def library_versions() -> dict:
    import torchvision
    dali = next((d.version for d in importlib.metadata.distributions()
                 if (d.metadata["Name"] or "").lower().startswith("nvidia-dali")), None)
    # plain str (torch's version is a str subclass, which a weights_only load refuses)
    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "dali": dali}


def device_name(device: torch.device | None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"cpu: {model}"
