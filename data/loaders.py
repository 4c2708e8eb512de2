"""Datasets and loaders from the `data` config group."""
from __future__ import annotations

import atexit
import multiprocessing
import signal
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from common.checks import check_bool, check_choice, check_number, check_pair
from common.errors import UserError
from common.signals import STOP_SIGNALS, stop_signals_blocked

from .classes import class_names
from .datasets import ImageFolderDataset, collate_readable, collate_train, existing_root
from .multicrop import EvalTransform
from .samplers import EpochSampler
from .synthetic import SyntheticLoader
from .transforms import PhotometricDistortion, TrainTransform
from .workers import check_workers, loader_workers

DATA_NAMES = ("imagenet", "sample", "synthetic", "folder")


def check_data_config(cfg) -> None:
    """The `data` group's keys (cfg is the whole config)."""
    d = "data"
    check_choice(cfg, f"{d}.name", DATA_NAMES)
    check_number(cfg, f"{d}.batch_size", integer=True, low=1)
    check_number(cfg, f"{d}.num_classes", integer=True, low=1, optional=cfg.data.name == "folder")
    check_number(cfg, f"{d}.crop_size", integer=True, low=16)
    if cfg.data.name == "synthetic":
        check_number(cfg, f"{d}.train_batches", integer=True, low=1)
        check_number(cfg, f"{d}.val_batches", integer=True, low=1)
        return
    if cfg.data.name != "sample" and cfg.data.get("root"):  # before any process starts
        existing_root(str(cfg.data.root))
    check_workers(cfg, f"{d}.workers")
    check_number(cfg, f"{d}.prefetch_factor", integer=True, low=1)
    check_number(cfg, f"{d}.eval_resize", integer=True, low=16, optional=True)
    if cfg.data.eval_resize is not None and cfg.data.eval_resize < cfg.data.crop_size:
        raise UserError(f"data.eval_resize={cfg.data.eval_resize} is smaller than data.crop_size="
                        f"{cfg.data.crop_size}; the centre crop must fit inside the resized image")
    check_pair(cfg, f"{d}.augment.scale", 0, 1)
    check_pair(cfg, f"{d}.augment.ratio", 0, 100)
    for k in ("brightness", "contrast", "saturation", "lighting"):
        check_number(cfg, f"{d}.augment.{k}", low=0)
    check_number(cfg, f"{d}.augment.hue", low=0, high=0.5)
    for k in ("hflip", "random_interpolation"):
        check_bool(cfg, f"{d}.augment.{k}")
    check_bool(cfg, f"{d}.fast_decode")
    check_choice(cfg, f"{d}.loader", ["auto", "pil", "dali"])


def eval_resize(data_cfg) -> int:
    """Shorter side before the centre crop: data.eval_resize, or crop/0.875 (256 for 224, 342 for 299)."""
    return int(data_cfg.eval_resize or round(data_cfg.crop_size / 0.875))


def train_transform(data_cfg) -> TrainTransform:
    a = data_cfg.augment
    return TrainTransform(size=data_cfg.crop_size, scale=tuple(a.scale), ratio=tuple(a.ratio), hflip=a.hflip,
               photometric=PhotometricDistortion.from_augment(a), random_interpolation=a.random_interpolation,
               fast_decode=data_cfg.fast_decode)


def eval_transform(data_cfg) -> EvalTransform:
    return EvalTransform(size=data_cfg.crop_size, resize=eval_resize(data_cfg), fast_decode=data_cfg.fast_decode)


def dataset_root(data_cfg) -> Path:
    if data_cfg.name == "sample":
        from .sample import ensure_sample_data
        return ensure_sample_data(data_cfg.root)
    if not data_cfg.root:
        raise UserError("data.root is not set; pass data.root=/path/to/imagenet or export IMAGENET_ROOT")
    return Path(data_cfg.root).expanduser()


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """Loader workers leave shutdown to the main process: a SIGTERM or Ctrl-C sent to the whole process group
    (SLURM's --signal, a terminal) must not kill them before the main process has written its checkpoint.
    They still end when the main process ends: torch's workers watch their parent, and `_kill_workers_at_exit`
    covers an interpreter exit that would otherwise wait on workers that ignore multiprocessing's SIGTERM."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # started blocked (SamplerLoader): now ignored


def _kill_workers_at_exit() -> None:
    # runs before multiprocessing's own exit handler (atexit is last-in, first-out), which would SIGTERM the
    # daemonic workers and then join them forever; torch's SIGCHLD check would report their deaths as errors
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for process in multiprocessing.active_children():
        if process.daemon:
            process.kill()


atexit.register(_kill_workers_at_exit)


def make_loader(dataset, sampler: EpochSampler, data_cfg, drop_last: bool, seed: int, collate_fn) -> DataLoader:
    workers = loader_workers(data_cfg.workers)
    return DataLoader(
        dataset, batch_size=data_cfg.batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_fn,
        pin_memory=bool(data_cfg.pin_memory) and torch.cuda.is_available(), drop_last=drop_last,
        persistent_workers=bool(data_cfg.persistent_workers) and workers > 0,
        prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed), worker_init_fn=ignore_stop_signals,
    )


def resolve_loader(setting: str, device) -> str:
    """`data.loader`: as given, or for auto DALI on a CUDA device when DALI is installed (PIL in loader
    processes decodes a few hundred images/s per core, a fraction of what a GPU trains at), else PIL."""
    if setting != "auto":
        return setting
    import importlib.util
    on_cuda = torch.device(device).type == "cuda"
    return "dali" if on_cuda and importlib.util.find_spec("nvidia.dali") is not None else "pil"


@dataclass
class DataBundle:
    train: object          # iterable of (uint8 images, targets, replaced files, photometric factors) with
    #                        set_epoch(epoch, start) and len(): a SamplerLoader (PIL) or a DaliLoader
    val: object
    classes: list[str]     # folder names (wnids for ImageNet)
    names: list[str]       # human-readable class names
    train_size: int
    val_size: int
    loader: str = "synthetic"  # the pipeline in use: pil, dali or synthetic

    def close(self) -> None:
        """End the loaders' worker processes (the PIL loaders'; the others have none to end)."""
        for loader in (self.train, self.val):
            getattr(loader, "close", lambda: None)()


def build_data(data_cfg, seed: int, rank: int = 0, world_size: int = 1, device="cpu") -> DataBundle:
    if data_cfg.name == "synthetic":
        n = data_cfg.num_classes
        size, batch = data_cfg.crop_size, data_cfg.batch_size
        train = SyntheticLoader(data_cfg.train_batches, batch, size, n, device, seed, world_size)
        val = SyntheticLoader(data_cfg.val_batches, batch, size, n, device, seed + 1, world_size)
        classes = [f"class_{i}" for i in range(n)]
        return DataBundle(train, val, classes, classes, train.dataset_size * world_size, val.dataset_size * world_size)

    root = dataset_root(data_cfg)
    train_set = ImageFolderDataset(root, data_cfg.train_split, train_transform(data_cfg), seed)
    # validation skips unreadable images (and reports them): a stand-in would be counted twice
    val_set = ImageFolderDataset(root, data_cfg.val_split, eval_transform(data_cfg), seed, classes=train_set.classes,
                                 replace_unreadable=False)
    if data_cfg.num_classes is not None and len(train_set.classes) != data_cfg.num_classes:
        raise UserError(f"{root / data_cfg.train_split} has {len(train_set.classes)} classes but "
                        f"data.num_classes={data_cfg.num_classes}; set data.num_classes={len(train_set.classes)}")
    if len(train_set) < data_cfg.batch_size * world_size:
        raise UserError(f"data.batch_size={data_cfg.batch_size} x {world_size} process(es) is larger than the "
                        f"{len(train_set)} training images; lower data.batch_size")
    loader = resolve_loader(data_cfg.loader, device)
    if loader == "dali":
        from .dali import build_dali_loaders
        train, val = build_dali_loaders(root, data_cfg.train_split, data_cfg.val_split, train_set, val_set, data_cfg,
                                        seed, rank, world_size, device)
    else:
        train_sampler = EpochSampler(len(train_set), seed, shuffle=True, rank=rank, world_size=world_size, pad=True)
        val_sampler = EpochSampler(len(val_set), seed, shuffle=False, rank=rank, world_size=world_size, pad=False)
        train = SamplerLoader(make_loader(train_set, train_sampler, data_cfg, drop_last=True, seed=seed,
                                          collate_fn=collate_train))
        val = SamplerLoader(make_loader(val_set, val_sampler, data_cfg, drop_last=False, seed=seed,
                                        collate_fn=collate_readable))
    return DataBundle(train, val, classes=train_set.classes, names=class_names(train_set.classes),
                      train_size=len(train_set), val_size=len(val_set), loader=loader)


class SamplerLoader:
    """A DataLoader whose epoch, and where in it to start, are set through its EpochSampler."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.batches = lambda: None  # the last iterator handed out (a weak reference)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: samples of this epoch that all ranks together have already trained on."""
        self.loader.sampler.set_epoch(epoch, start)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        with stop_signals_blocked():  # the workers start here
            batches = iter(self.loader)
        self.batches = weakref.ref(batches)
        return batches

    def close(self) -> None:
        """End the worker processes now. Persistent ones otherwise live as long as the loader, and when that
        ends in a garbage collection (after a run that raised: its traceback refers to the trainer), torch's
        clean-up from there stalls 5 s a worker (measured: they never see its request to end)."""
        batches = self.batches()
        if batches is not None:
            getattr(batches, "_shutdown_workers", lambda: None)()  # torch's own clean-up (private); idempotent
