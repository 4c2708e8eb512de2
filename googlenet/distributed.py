"""torch.distributed set-up from the environment torchrun provides, and the collectives the loop needs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from data.checks import check_bool, check_choice, check_number


def check_dist_config(cfg) -> None:
    check_choice(cfg, "dist.backend", ["auto", "nccl", "gloo"])
    check_number(cfg, "dist.timeout_minutes", low=0, low_open=True)
    for key in ("find_unused_parameters", "static_graph", "sync_bn"):
        if OmegaConf.select(cfg, f"dist.{key}") is not None:
            check_bool(cfg, f"dist.{key}")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_time() -> datetime:
    """When this job was launched: under torchrun the agent's start time (the same for every local rank and
    across elastic restarts), otherwise now. Used for the `${now:...}` in the default run directory."""
    if launched_by_torchrun():
        try:
            ticks = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[19])
            boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
            return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return datetime.now()


def init_distributed(dist_cfg, device_type: str) -> DistEnv:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = dist_cfg.backend if dist_cfg.backend != "auto" else ("nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device("cuda", local_rank)} if backend == "nccl" else {}
        timeout = timedelta(minutes=dist_cfg.timeout_minutes)
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is not None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # After an elastic restart the agent's store still holds the dead workers' addresses; a prefix per
            # attempt keeps the new workers from reading them (seen as gloo "connection refused" on restart).
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                  is_master=False, timeout=timeout)
            dist.init_process_group(backend, store=dist.PrefixStore(f"googlenet/attempt_{restart}", store),
                                    rank=rank, world_size=world_size, timeout=timeout, **kwargs)
        else:
            dist.init_process_group(backend, timeout=timeout, **kwargs)
    return DistEnv(rank, world_size, local_rank)


def wrap_ddp(model: torch.nn.Module, env: DistEnv, device: torch.device, dist_cfg) -> torch.nn.Module:
    """The model as the training step calls it: DistributedDataParallel when there are several processes."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=dist_cfg.find_unused_parameters,
                                   static_graph=dist_cfg.static_graph)


def broadcast_string(value: str, env: DistEnv) -> str:
    """Rank 0's value on every rank."""
    if not env.enabled:
        return value
    box = [value if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, env: DistEnv, device) -> bool:
    """True on every rank if it is True on any rank (so all ranks stop at the same step)."""
    if not env.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
