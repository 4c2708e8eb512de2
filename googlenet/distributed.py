"""torch.distributed set-up from the environment torchrun provides, and the collectives the loop needs."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from common.checks import check_bool, check_choice, check_number
from common.errors import UserError


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
    local_world_size: int = 1
    launcher: str = "none"          # torchrun | submitit | srun | none
    master_addr: str | None = None  # for launchers that do not export MASTER_ADDR/MASTER_PORT themselves
    master_port: int | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _int_env(name: str, environ, default: str | None = None) -> int:
    value = environ.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"environment variable {name}={value!r} is not an integer; fix or unset it") from None


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[07-09,12],cpu3" -> "gpu07"."""
    head = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not head:
        raise UserError(f"cannot read SLURM_JOB_NODELIST={nodelist!r}; set MASTER_ADDR to the first node's name")
    prefix, ranges = head.groups()
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _port_for(job_id: str) -> int:
    return 20000 + int(hashlib.blake2b(job_id.encode(), digest_size=4).hexdigest(), 16) % 40000


def detect_env(environ=None) -> DistEnv:
    """Rank and world size from the launcher's environment: torchrun (RANK, WORLD_SIZE, ...), submitit's
    local executor (SUBMITIT_LOCAL_*), or a SLURM job step started by srun or submitit (SLURM_PROCID, ...).
    A plain `python train.py` (also inside an allocation, without srun) is one process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "TORCHELASTIC_RUN_ID" in env:
        world = _int_env("WORLD_SIZE", env, "1")
        if world > 1:
            return DistEnv(_int_env("RANK", env, "0"), world, _int_env("LOCAL_RANK", env, "0"),
                           _int_env("LOCAL_WORLD_SIZE", env, str(world)), "torchrun")
        return DistEnv(launcher="torchrun")
    if env.get("SUBMITIT_EXECUTOR") == "local" and "SUBMITIT_LOCAL_NTASKS" in env:  # submitit_local
        world = _int_env("SUBMITIT_LOCAL_NTASKS", env)
        rank = _int_env("SUBMITIT_LOCAL_GLOBALID", env, "0")
        return DistEnv(rank, world, _int_env("SUBMITIT_LOCAL_LOCALID", env, "0"), world, "submitit",
                       "127.0.0.1", _port_for(env.get("SUBMITIT_LOCAL_JOB_ID", "local")))
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:  # inside an srun step (submitit's too)
        world = _int_env("SLURM_STEP_NUM_TASKS", env)
        if world > 1:
            nodes = max(_int_env("SLURM_STEP_NUM_NODES", env, env.get("SLURM_JOB_NUM_NODES", "1")), 1)
            host = env.get("MASTER_ADDR") or first_slurm_host(env.get("SLURM_STEP_NODELIST")
                                                               or env.get("SLURM_JOB_NODELIST", "localhost"))
            port = _int_env("MASTER_PORT", env) if "MASTER_PORT" in env else _port_for(env.get("SLURM_JOB_ID", "0"))
            return DistEnv(_int_env("SLURM_PROCID", env), world, _int_env("SLURM_LOCALID", env, "0"),
                           world // nodes, "srun", host, port)
        return DistEnv(launcher="srun")
    return DistEnv()


def launched_by_torchrun() -> bool:
    env = detect_env()
    return env.launcher == "torchrun" and ("TORCHELASTIC_RUN_ID" in os.environ or env.enabled)


def launched_by_a_scheduler() -> bool:
    """torchrun, submitit or srun: launchers that restart or requeue a job, which should then continue."""
    return detect_env().launcher != "none"


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


def local_cuda_index(env: DistEnv) -> int:
    """This process's GPU among those it sees: its local rank when it sees the node's GPUs, 0 when the scheduler
    gave each task one GPU of its own (`--gpus-per-task=1`, `--gpu-bind`: every task sees only cuda:0)."""
    seen = torch.cuda.device_count()
    if seen == 1:
        return 0
    if env.local_rank < seen:
        return env.local_rank
    raise UserError(f"local rank {env.local_rank} of {env.local_world_size} sees {seen} GPU(s): give each process "
                    "one GPU of its own or let every process see all of the node's GPUs")


def init_distributed(dist_cfg, device_type: str) -> DistEnv:
    env = detect_env()
    if not env.enabled:
        return env
    backend = dist_cfg.backend if dist_cfg.backend != "auto" else ("nccl" if device_type == "cuda" else "gloo")
    gpu = local_cuda_index(env) if device_type == "cuda" else None
    if gpu is not None:
        torch.cuda.set_device(gpu)
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device("cuda", gpu)} if backend == "nccl" else {}
        timeout = timedelta(minutes=dist_cfg.timeout_minutes)
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if env.launcher != "torchrun":  # submitit / srun tasks: rendezvous at the first host
            store = dist.TCPStore(env.master_addr, env.master_port, env.world_size, is_master=env.rank == 0,
                                  timeout=timeout)
            dist.init_process_group(backend, store=store, rank=env.rank, world_size=env.world_size,
                                    timeout=timeout, **kwargs)
        elif restart is not None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # After an elastic restart the agent's store still holds the dead workers' addresses; a prefix per
            # attempt keeps the new workers from reading them (seen as gloo "connection refused" on restart).
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env.world_size,
                                  is_master=False, timeout=timeout)
            dist.init_process_group(backend, store=dist.PrefixStore(f"googlenet/attempt_{restart}", store),
                                    rank=env.rank, world_size=env.world_size, timeout=timeout, **kwargs)
        else:
            dist.init_process_group(backend, timeout=timeout, **kwargs)
    return env


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


def gather_objects(value, env: DistEnv) -> list:
    """Every rank's `value`, in rank order (a one-element list in a single process)."""
    if not env.enabled:
        return [value]
    values = [None] * env.world_size
    dist.all_gather_object(values, value)
    return values


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _reduce_flag(flag: bool, env: DistEnv, device, op) -> bool:
    if not env.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=op)
    return bool(t.item())


def any_rank(flag: bool, env: DistEnv, device) -> bool:
    """True on every rank if it is True on any rank (so all ranks stop at the same step)."""
    return _reduce_flag(flag, env, device, dist.ReduceOp.MAX)


def all_ranks(flag: bool, env: DistEnv, device) -> bool:
    """True on every rank if it is True on every rank."""
    return _reduce_flag(flag, env, device, dist.ReduceOp.MIN)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
