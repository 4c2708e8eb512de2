"""Input-pipeline throughput on an image folder: our loaders against the plain torchvision recipe, side by side.

    python scripts/benchmark_data.py ROOT [--loader torchvision,pil,dali] [--workers 1] [--paper]
                                          [--batch-size 64] [--size 224] [--epochs 3] [--device cpu|cuda]

ROOT is an ImageFolder tree (ROOT/<class>/*, or ROOT/train/<class>/*) or a flat folder of images. Each
pipeline delivers normalised float batches on --device, and the time to do so is what is measured:
- torchvision: ImageFolder + RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3) [+ ColorJitter(0.4, 0.4,
  0.4, 0.1) with --paper] + RandomHorizontalFlip + ToTensor + Normalize, in a DataLoader with --workers
  processes (the standard recipe; its batches are then moved to the device);
- pil: our loader (data.loader=pil): the same crop distribution, JPEG draft decoding, crop and resize in
  one resampling step, uint8 batches; the photometric distortions (--paper, with the paper's random
  interpolation) and the normalisation run on the device, on whole batches, in the consuming process;
- dali: our DALI pipeline (data.loader=dali) with --workers threads, then the same device operations.
With --workers 1 each pipeline has one core for decoding (and the main process another): the figures are per
decoding core. The first pass warms the page cache and is not timed; the median of --epochs passes is.
The last line is our PIL pipeline's images/s as a multiple of torchvision's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from data.datasets import IMAGE_EXTENSIONS, ImageFolderDataset, collate_train  # noqa: E402
from data.device_ops import IMAGENET_MEAN, IMAGENET_STD, BatchNormalizer, adjust_photometric  # noqa: E402
from data.samplers import EpochSampler  # noqa: E402
from data.transforms import PhotometricDistortion, TrainTransform  # noqa: E402

PAPER_JITTER = (0.4, 0.4, 0.4, 0.1)


def class_root(root: Path, scratch: Path) -> Path:
    """A folder of class folders for `root`; a flat folder of images is linked into one class."""
    if (root / "train").is_dir():
        return root / "train"
    if any(p.is_dir() for p in root.iterdir()):
        return root
    flat = scratch / "all"
    flat.mkdir(parents=True)
    for p in sorted(root.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            (flat / p.name).symlink_to(p.resolve())
    return scratch


def torchvision_pipeline(root: Path, args, device):
    steps = [transforms.RandomResizedCrop(args.size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))]
    if args.paper:
        steps.append(transforms.ColorJitter(*PAPER_JITTER))
    steps += [transforms.RandomHorizontalFlip(), transforms.ToTensor(),
              transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    loader = DataLoader(datasets.ImageFolder(str(root), transform=transforms.Compose(steps)),
                        batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        pin_memory=device.type == "cuda")

    def batches(epoch):
        for images, targets in loader:
            yield images.to(device, non_blocking=True), targets
    return batches


def on_device(batches, args, device):
    """Our device-side steps after a loader: photometric distortions (--paper) and normalisation."""
    normalizer = BatchNormalizer(0.1 if args.paper else 0.0).to(device).train()

    def run(epoch):
        for images, targets, _, factors in batches(epoch):
            images = images.to(device, non_blocking=True)
            if args.paper:
                images = adjust_photometric(images, factors.to(device, non_blocking=True))
            yield normalizer(images), targets
    return run


def pil_pipeline(root: Path, args, device):
    photometric = PhotometricDistortion(*PAPER_JITTER) if args.paper else None
    dataset = ImageFolderDataset(root.parent, root.name, TrainTransform(
        size=args.size, photometric=photometric, random_interpolation=args.paper))
    sampler = EpochSampler(len(dataset))
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                        collate_fn=collate_train, pin_memory=device.type == "cuda")

    def batches(epoch):
        sampler.set_epoch(epoch)
        yield from loader
    return on_device(batches, args, device)


def dali_data_config(args):
    """configs/data/imagenet.yaml at this benchmark's size, batch and workers, loader dali."""
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "data" / "imagenet.yaml")
    cfg.crop_size, cfg.batch_size, cfg.workers, cfg.loader = args.size, args.batch_size, max(args.workers, 1), "dali"
    return cfg


def dali_pipeline(root: Path, args, device):
    from data.dali import DaliLoader
    cfg = dali_data_config(args)
    for name, amount in zip(("brightness", "contrast", "saturation", "hue"), PAPER_JITTER):
        cfg.augment[name] = amount if args.paper else 0.0
    cfg.augment.random_interpolation = args.paper
    dataset = ImageFolderDataset(root.parent, root.name, lambda path, rng: None)
    loader = DaliLoader([p for p, _ in dataset.samples], dataset.targets, train=True, data_cfg=cfg, seed=0, rank=0,
                        world_size=1, device=device, unreadable=set())

    def batches(epoch):
        loader.set_epoch(epoch)
        yield from loader
    return on_device(batches, args, device)


PIPELINES = {"torchvision": torchvision_pipeline, "pil": pil_pipeline, "dali": dali_pipeline}


def dali_rebuild_seconds(root: Path, args, device, files: int) -> dict:
    """What the DALI loader pays at the start of every epoch and validation pass: building a pipeline over
    `files` file names (the folder's files repeated, as for ImageNet's 1,281,167) and its first batch."""
    from data.dali import build_pipeline, import_dali
    cfg = dali_data_config(args)
    dataset = ImageFolderDataset(root.parent, root.name, lambda path, rng: None)
    paths = [p for p, _ in dataset.samples]
    listed = [paths[i % len(paths)] for i in range(files)]
    iterator_class = import_dali()[3]
    start = time.perf_counter()
    pipe = build_pipeline(listed, [0] * files, train=True, data_cfg=cfg, seed=0, device=device)
    built = time.perf_counter()
    next(iter(iterator_class([pipe], ["images", "labels", "factors"], reader_name="reader", auto_reset=False)))
    if device.type == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter()
    return {"measure": "dali_rebuild", "files": files, "build_seconds": built - start,
            "first_batch_seconds": first - built, "device": str(device)}


def time_pipeline(run, epochs: int, device) -> tuple[float, int]:
    """Median images/s over `epochs` timed passes (after one untimed pass), and images per pass."""
    rates, count = [], 0
    for epoch in range(epochs + 1):
        start, count = time.perf_counter(), 0
        for images, _ in run(epoch):
            count += len(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if epoch:
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--loader", default="torchvision,pil", help="comma separated: torchvision, pil, dali")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3, help="timed passes (median reported)")
    p.add_argument("--paper", action="store_true", help="the paper's augmentation on every side (colour jitter, "
                   "random interpolation, lighting)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dali-rebuild", type=int, default=0, metavar="FILES",
                   help="also time what DALI pays per epoch: a pipeline over FILES file names and its first batch")
    p.add_argument("--json", action="store_true", help="print one JSON line per pipeline")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.loader.split(",") if n.strip()]
    unknown = [n for n in names if n not in PIPELINES]
    if not args.root.is_dir() or unknown:
        problem = f"{args.root} is not a folder" if not args.root.is_dir() else f"unknown loader(s) {unknown}"
        print(f"error: {problem}; see --help", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    device = torch.device(args.device)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = class_root(args.root, Path(scratch) / "train")
        for name in names:
            rate, count = time_pipeline(PIPELINES[name](root, args, device), args.epochs, device)
            results[name] = rate
            per_core = rate / max(args.workers, 1)
            if args.json:
                print(json.dumps({"pipeline": name, "images_per_sec": rate, "per_worker": per_core, "paper": args.paper,
                                  "workers": args.workers, "size": args.size, "images": count, "device": str(device)}))
            else:
                print(f"{name:<12} {rate:8.1f} images/s  ({per_core:6.1f} per worker, {args.workers} workers, "
                      f"{count} images, {args.size} px{', paper augmentation' if args.paper else ''}, {device})")
        if args.dali_rebuild:
            rebuild = dali_rebuild_seconds(root, args, device, args.dali_rebuild)
            print(json.dumps(rebuild) if args.json else
                  f"dali rebuild: {rebuild['build_seconds']:.2f} s to build a pipeline over {args.dali_rebuild:,} "
                  f"files, {rebuild['first_batch_seconds']:.2f} s to its first batch ({device})")
    if "torchvision" in results:
        for name in (n for n in names if n != "torchvision"):
            print(f"{name} / torchvision: {results[name] / results['torchvision']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
