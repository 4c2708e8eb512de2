"""`data.loader=dali`: the input pipeline on NVIDIA DALI (pip install -r requirements-dali.txt).

Training: a random crop window of `augment.scale` area and `augment.ratio` aspect is drawn per image
(`random_crop_generator`) and only that window is decoded (`decoders.image_slice`); it is resized to the crop
size (with the paper's random interpolation when enabled: linear, triangular for "area", nearest, cubic),
flipped, and leaves as uint8 CHW. The photometric factors are drawn per image by DALI and applied on the
device by `device_ops.adjust_photometric`, the same op as for the PIL loader, so both loaders distort alike;
normalisation and PCA lighting stay in the trainer's normaliser. Validation: decode, shorter side to
`eval_resize`, centre crop. Decoding is `mixed` on CUDA (nvJPEG, the hardware decoder where present) and
`cpu` on the CPU, so the same pipeline runs in the tests.

Order, sharding and resume come from the project's own `EpochSampler`: each epoch the pipeline reads this
rank's share of the epoch's seeded permutation, so DDP ranks see disjoint images, validation counts every
image once, and a resume at an epoch boundary is exact. A mid-epoch resume continues with exactly the images
not yet seen, but their random crops differ from those of an uninterrupted run (the pipeline's random
streams restart). Files that cannot be decoded are found by a one-off scan (cached) and, in training,
replaced by the next readable image (reported like the PIL loader's); a file that still fails at run time is
found, added to the list and replaced, and the epoch goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.errors import UserError
from common.files import write_atomic
from common.seeds import derive_seed

from .samplers import EpochSampler
from .workers import loader_workers

DALI_REQUIREMENT = "pip install -r requirements-dali.txt (nvidia-dali-cuda130; nvidia-dali-cuda120 for CUDA 12)"
DECODABLE = {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM", "JPEG2000"}
SCAN_VERSION = 1


def import_dali():
    try:
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError:
        raise UserError(f"data.loader=dali needs NVIDIA DALI: {DALI_REQUIREMENT}") from None
    return fn, types, pipeline_def, DALIGenericIterator, LastBatchPolicy


# ------------------------------------------------------------------------------------- unreadable files

def quick_check(path: str) -> bool:
    """Whether DALI can be expected to decode `path`: an image header PIL can parse, in a format DALI decodes,
    and, for JPEGs, the end-of-image marker present (a truncated download fails in the middle of a batch)."""
    try:
        with Image.open(path) as img:
            if img.format not in DECODABLE or img.size[0] < 1 or img.size[1] < 1:
                return False
            if img.format == "JPEG":
                with open(path, "rb") as f:
                    f.seek(max(0, os.path.getsize(path) - 64))
                    return b"\xff\xd9" in f.read()
        return True
    except Exception:  # noqa: BLE001 - any failure to parse the header means unreadable
        return False


def full_check(path: str) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def _scan_cache(split_dir: Path, paths: list[str]) -> Path:
    newest = max((e.stat().st_mtime_ns for e in os.scandir(split_dir) if e.is_dir()), default=0)
    key = f"{SCAN_VERSION}:{split_dir.resolve()}:{len(paths)}:{newest}"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "googlenet-inception" / "scans"
    return cache / (hashlib.sha1(key.encode()).hexdigest() + ".json")


def _scan(paths: list[str], threads: int) -> set[str]:
    with ThreadPoolExecutor(max(1, threads)) as pool:
        return {p for p, ok in zip(paths, pool.map(quick_check, paths, chunksize=256)) if not ok}


def _all_ranks(value) -> list:
    """`value` from every rank of the run's process group (one collective)."""
    import torch.distributed as dist
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def unreadable_files(split_dir: Path, paths: list[str], threads: int = 8) -> set[str]:
    """The files of a split that DALI would fail on: a one-off scan, cached per split (keyed by its path, file
    count and folder times) under ~/.cache/googlenet-inception/scans. Under DDP the ranks share the scan: each
    reads 1/world of the files and the results are gathered (unless every rank's node has the cache), and one
    process per node writes the cache."""
    import torch.distributed as dist
    cache = _scan_cache(split_dir, paths)
    try:
        cached = set(json.loads(cache.read_text())["unreadable"])
    except (OSError, ValueError, KeyError):
        cached = None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if all(found for found in _all_ranks(cached is not None)):  # every node has it: no collective scan
            return cached
        rank, world = dist.get_rank(), dist.get_world_size()
        bad = set().union(*(set(part) for part in _all_ranks(sorted(_scan(paths[rank::world], threads)))))
        first_on_node = os.environ.get("LOCAL_RANK", "0") == "0"
    elif cached is not None:
        return cached
    else:
        bad, first_on_node = _scan(paths, threads), True
    if first_on_node:
        try:
            write_atomic(cache, json.dumps({"split": str(split_dir), "unreadable": sorted(bad)}))
        except UserError:
            pass  # a read-only cache only costs a rescan next time
    return bad


# -------------------------------------------------------------------------------------------- pipelines

# Decode as PIL does, so that a run's validation on DALI matches evaluate.py (PIL): EXIF orientation ignored (PIL
# does not apply it; DALI does by default) and libjpeg-turbo's "fancy" chroma upsampling on the GPU as well
# (nvJPEG's own upsampling differs; the CPU decoder is libjpeg-turbo already).
AS_PIL_DECODES = {"adjust_orientation": False, "jpeg_fancy_upsampling": True}

def build_pipeline(files: list[str], labels: list[int], *, train: bool, data_cfg, seed: int, device: torch.device,
                   with_windows: bool = False):
    """A DALI pipeline over `files` in that order. Outputs: images (uint8 CHW), labels, and for training the
    photometric factors (B, 4); with `with_windows`, also each crop window (anchor, shape, image shape)."""
    from .loaders import eval_resize
    fn, types, pipeline_def, _, _ = import_dali()
    gpu = device.type == "cuda"
    decode_on = "mixed" if gpu else "cpu"
    a = data_cfg.augment
    size = int(data_cfg.crop_size)
    interpolations = [types.INTERP_LINEAR, types.INTERP_TRIANGULAR, types.INTERP_NN, types.INTERP_CUBIC]

    @pipeline_def(batch_size=int(data_cfg.batch_size), num_threads=max(1, loader_workers(data_cfg.workers)),
                  device_id=(device.index or 0) if gpu else None, seed=seed, prefetch_queue_depth=2)
    def pipeline():
        jpegs, labs = fn.readers.file(files=files, labels=labels, random_shuffle=False, name="reader",
                                      pad_last_batch=not train)
        if not train:
            images = fn.decoders.image(jpegs, device=decode_on, output_type=types.RGB, **AS_PIL_DECODES)
            images = fn.resize(images, resize_shorter=float(eval_resize(data_cfg)))
            images = fn.crop_mirror_normalize(images, crop=(size, size), dtype=types.UINT8, output_layout="CHW")
            return images, labs
        shape = fn.peek_image_shape(jpegs)
        anchor, window = fn.random_crop_generator(shape, random_area=list(a.scale), random_aspect_ratio=list(a.ratio),
                                                  num_attempts=10)
        images = fn.decoders.image_slice(jpegs, anchor, window, device=decode_on, output_type=types.RGB,
                                         **AS_PIL_DECODES,
                                         axis_names="HW")
        if a.random_interpolation:
            chosen = fn.random.choice([int(i) for i in interpolations])
            images = fn.resize(images, resize_x=size, resize_y=size,
                               interp_type=fn.cast(chosen, dtype=types.INTERP_TYPE))
        else:
            images = fn.resize(images, resize_x=size, resize_y=size)
        mirror = fn.random.coin_flip(probability=0.5 if a.hflip else 0.0)
        images = fn.crop_mirror_normalize(images, dtype=types.UINT8, output_layout="CHW", mirror=mirror)
        factors = fn.stack(*[_factor(fn, amount, neutral) for amount, neutral in
                             ((a.brightness, 1.0), (a.contrast, 1.0), (a.saturation, 1.0), (a.hue, 0.0))])
        outputs = (images, labs, factors)
        return outputs + (anchor, window, shape) if with_windows else outputs

    pipe = pipeline()
    pipe.build()
    return pipe


def _factor(fn, amount: float, neutral: float):
    if amount <= 0:
        return fn.constant(fdata=neutral, shape=[])
    if neutral == 0.0:  # hue: a shift in turns
        return fn.random.uniform(range=[-amount, amount])
    return fn.random.uniform(range=[max(0.0, 1 - amount), 1 + amount])


class DaliLoader:
    """This rank's batches of one split through DALI: set_epoch(epoch, start), len(), iteration yielding
    (uint8 images, targets, skipped files, photometric factors or None), as the PIL loader does."""

    def __init__(self, files: list[str], labels: list[int], *, train: bool, data_cfg, seed: int, rank: int,
                 world_size: int, device, unreadable: set[str]):
        self.train, self.data_cfg, self.seed, self.rank = train, data_cfg, seed, rank
        self.device = torch.device(device)
        self.batch_size = int(data_cfg.batch_size)
        self.unreadable = set(unreadable)
        if train:
            self.files, self.labels = list(files), list(labels)
        else:  # validation skips unreadable images: every readable one counted once
            kept = [(f, y) for f, y in zip(files, labels) if f not in self.unreadable]
            self.files, self.labels = [f for f, _ in kept], [y for _, y in kept]
            self.skipped = sorted(f for f in files if f in self.unreadable)
        self.sampler = EpochSampler(len(self.files), seed, shuffle=train, rank=rank, world_size=world_size, pad=train)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        self.sampler.set_epoch(epoch, start)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _replacement(self, index: int) -> int:
        """The next readable sample after `index` (as the PIL loader replaces an unreadable file)."""
        for offset in range(1, len(self.files) + 1):
            k = (index + offset) % len(self.files)
            if self.files[k] not in self.unreadable:
                return k
        raise UserError("no readable image in the training split; check the files")

    def _order(self) -> tuple[list[int], list[list[str]]]:
        """This rank's sample indices for the epoch, with unreadable ones replaced, and what each replaced."""
        order, replaced = [], []
        for index, _ in self.sampler:
            if self.train and self.files[index] in self.unreadable:
                order.append(self._replacement(index))
                replaced.append([self.files[index]])
            else:
                order.append(index)
                replaced.append([])
        if self.train:
            usable = len(order) // self.batch_size * self.batch_size
            order, replaced = order[:usable], replaced[:usable]
        return order, replaced

    def __iter__(self):
        order, replaced = self._order()
        done = 0
        while done < len(order):
            try:
                for batch in self._batches(order[done:], done):
                    n = len(batch[1])
                    skipped = [p for r in replaced[done:done + n] for p in r]
                    if not self.train and done == 0 and self.rank == 0:
                        skipped = self.skipped
                    done += n
                    yield (*batch[:2], skipped, *batch[2:])
            except RuntimeError as e:
                if not any(op in str(e) for op in ("decoders", "readers.file", "peek_image_shape")):  # a bad file
                    raise
                order = self._replace_failed(order, replaced, done, e)

    def _batches(self, order: list[int], position: int):
        _, _, _, iterator_class, last_batch = import_dali()
        files = [self.files[i] for i in order]
        labels = [self.labels[i] for i in order]
        seed = derive_seed(self.seed, "dali", self.epoch, self.rank, self.start + position) & 0x7FFFFFFF
        pipe = build_pipeline(files, labels, train=self.train, data_cfg=self.data_cfg, seed=seed, device=self.device)
        names = ["images", "labels", "factors"] if self.train else ["images", "labels"]
        iterator = iterator_class([pipe], names, reader_name="reader", auto_reset=False,
                                  last_batch_policy=last_batch.DROP if self.train else last_batch.PARTIAL)
        for output in iterator:
            out = output[0]
            targets = out["labels"].view(-1).long().to(self.device, non_blocking=True)
            batch = (out["images"], targets)
            yield batch + (out["factors"].float(),) if self.train else batch

    def _replace_failed(self, order: list[int], replaced: list[list[str]], done: int, error: Exception) -> list[int]:
        window = order[done:done + 3 * self.batch_size]  # the failing batch, and what DALI had prefetched
        named = {self.files[i] for i in set(window) if self.files[i] in str(error)}  # the reader names its file
        failed = named or {self.files[i] for i in set(window) if not full_check(self.files[i])}
        if not failed:
            raise UserError(f"DALI failed to decode a batch whose files PIL reads ({str(error).splitlines()[0]}); "
                            "use data.loader=pil for this dataset") from None
        self.unreadable |= failed
        for k in range(done, len(order)):
            if self.files[order[k]] in failed:
                if not self.train:
                    raise UserError(f"validation image {self.files[order[k]]} cannot be decoded; remove it or "
                                    "clear ~/.cache/googlenet-inception/scans and run again") from None
                replaced[k] = replaced[k] + [self.files[order[k]]]
                order[k] = self._replacement(order[k])
        return order


def build_dali_loaders(root: Path, train_split: str, val_split: str, train_set, val_set, data_cfg, seed: int,
                       rank: int, world_size: int, device) -> tuple[DaliLoader, DaliLoader]:
    """Train and validation loaders over the file lists of the (already scanned) image-folder datasets."""
    loaders = []
    for split, dataset, train in ((train_split, train_set, True), (val_split, val_set, False)):
        paths = [p for p, _ in dataset.samples]
        bad = unreadable_files(root / split, paths, threads=max(1, loader_workers(data_cfg.workers)))
        loaders.append(DaliLoader(paths, dataset.targets, train=train, data_cfg=data_cfg, seed=seed, rank=rank,
                                  world_size=world_size, device=device, unreadable=bad))
    return loaders[0], loaders[1]


def crop_windows(paths: list[str], data_cfg, seed: int = 0) -> np.ndarray:
    """(area fraction, aspect ratio w/h) of the training crop window DALI draws for each path (for tests)."""
    pipe = build_pipeline(paths, list(range(len(paths))), train=True, data_cfg=data_cfg, seed=seed,
                          device=torch.device("cpu"), with_windows=True)
    rows = []
    for _ in range(-(-len(paths) // int(data_cfg.batch_size))):
        outputs = pipe.run()
        windows, shapes = outputs[4], outputs[5]
        for k in range(len(windows)):
            h, w = np.array(windows.at(k))[:2]
            height, width = np.array(shapes.at(k))[:2]
            rows.append((h * w / (height * width), w / h))
    return np.array(rows[:len(paths)])
