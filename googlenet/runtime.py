"""What training, evaluation and the benchmarks share about the machine: the device, the precision
(autocast), the memory format, backend flags and seeds.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import torch

from common.checks import check_bool, check_choice
from common.errors import UserError

from . import distributed as D

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_runtime_config(cfg) -> None:
    """The `runtime` group: the same keys in every command."""
    device = str(cfg.runtime.device)
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UserError(f"runtime.device={device!r} is not one of: auto, cpu, cuda, cuda:N")
    check_choice(cfg, "runtime.precision", ["auto", "32", "bf16", "fp16", 32])
    check_choice(cfg, "runtime.channels_last", ["auto", True, False])
    check_bool(cfg, "runtime.compile")
    check_bool(cfg, "runtime.cudnn_benchmark")


def resolve_device(name: str) -> torch.device:
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"runtime.device={name} but no CUDA device is available; use runtime.device=cpu")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"runtime.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def native_bf16(device: torch.device) -> str | None:
    """Why `device` computes bf16 natively (a short reason), or None when it does not."""
    if device.type == "cuda":
        return "this GPU supports bf16" if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        try:
            flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")),
                         [])
        except OSError:
            return None
        found = [name for flag, name in (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16")) if flag in flags]
        return f"this CPU has {' and '.join(found)}" if found else None
    return None


def resolve_precision(name, device: torch.device) -> str:
    """`auto`: bf16 where the device computes it natively (CUDA GPUs that support it, CPUs with AVX512-BF16 or
    AMX), 32 elsewhere; otherwise the name as given."""
    name = str(name)
    if name == "auto":
        return "bf16" if native_bf16(device) else "32"
    if name == "fp16" and device.type != "cuda":
        raise UserError("runtime.precision=fp16 needs a CUDA device; use runtime.precision=bf16 on CPU")
    return name


@dataclass(frozen=True)
class Runtime:
    """Where and how a network runs: device, autocast dtype, memory format."""

    device: torch.device
    precision: str                 # "32", "bf16" or "fp16"
    channels_last: bool
    reason: str = ""               # why this precision, when it was chosen automatically

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.preserve_format

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device, memory_format=self.memory_format)


def build_runtime(device: torch.device, precision, channels_last="auto", cudnn_benchmark: bool = True) -> Runtime:
    """Resolve the settings for `device` and set the process-wide backend flags they imply."""
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)  # so that kernels and NCCL default to this GPU, not GPU 0
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # channels_last is faster on CUDA and, measured on a 2-core x86 CPU (oneDNN), there too
    last = device.type in ("cuda", "cpu") if channels_last == "auto" else bool(channels_last)
    chosen = resolve_precision(precision, device)
    reason = ""
    if str(precision) == "auto":
        reason = f"auto: {native_bf16(device)}" if chosen == "bf16" else "auto: no native bf16 here"
    return Runtime(device, chosen, last, reason)


def runtime_from_config(runtime_cfg, device: torch.device | None = None) -> Runtime:
    """The `runtime` group's settings on `device` (default: `runtime.device`)."""
    r = runtime_cfg
    return build_runtime(device or resolve_device(r.device), r.precision, r.channels_last, r.cudnn_benchmark)


def start(runtime_cfg, dist_cfg) -> tuple[D.DistEnv, Runtime]:
    """The process's place in the job and how it runs: the `runtime.device` (this rank's GPU under DDP), the
    process group, precision and memory format. Training and evaluation start the same way."""
    device = resolve_device(runtime_cfg.device)
    env = D.init_distributed(dist_cfg, device.type)
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", D.local_cuda_index(env))
    return env, runtime_from_config(runtime_cfg, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
