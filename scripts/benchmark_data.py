"""Loader throughput on an image folder: our training pipeline against a plain torchvision baseline.

    python scripts/benchmark_data.py ROOT [--workers 2] [--batch-size 64] [--size 224] [--epochs 3]

ROOT is an ImageFolder tree (ROOT/<class>/*, or ROOT/train/<class>/*) or a flat folder of images. The
baseline is ImageFolder + RandomResizedCrop(size) + RandomHorizontalFlip + ToTensor + Normalize, the
standard torchvision recipe; ours is data.transforms.TrainTransform (same crop distribution, JPEG draft
decoding, crop+resize in one step, uint8 batches normalised later on the device). Both run in a DataLoader
with the same workers and batch size; the first pass warms the page cache and is not timed.
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
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from data.datasets import IMAGE_EXTENSIONS, ImageFolderDataset  # noqa: E402
from data.samplers import EpochSampler  # noqa: E402
from data.transforms import PhotometricDistortion, TrainTransform  # noqa: E402


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


def time_loader(loader, epochs: int) -> tuple[float, int]:
    """Median images/s over `epochs` timed passes (after one untimed pass), and images per pass."""
    rates, count = [], 0
    for epoch in range(epochs + 1):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch[1])
        if epoch:
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3, help="timed passes (median reported)")
    p.add_argument("--json", action="store_true", help="print one JSON line per pipeline")
    args = p.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a folder", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = class_root(args.root, Path(scratch) / "train")
        pipelines = {}
        baseline_tf = transforms.Compose([
            transforms.RandomResizedCrop(args.size), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        baseline = datasets.ImageFolder(str(root), transform=baseline_tf)
        pipelines["torchvision baseline"] = DataLoader(baseline, batch_size=args.batch_size, shuffle=True,
                                                       num_workers=args.workers, drop_last=False)
        for name, photometric in (("ours", None), ("ours + paper photometric", PhotometricDistortion(0.4, 0.4, 0.4, 0.1))):
            ds = ImageFolderDataset(root.parent, root.name, TrainTransform(size=args.size, photometric=photometric))
            pipelines[name] = DataLoader(ds, batch_size=args.batch_size, sampler=EpochSampler(len(ds)),
                                         num_workers=args.workers)
        results = {}
        for name, loader in pipelines.items():
            rate, count = time_loader(loader, args.epochs)
            results[name] = rate
            per_worker = rate / max(args.workers, 1)
            if args.json:
                print(json.dumps({"pipeline": name, "images_per_sec": rate, "per_worker": per_worker,
                                  "workers": args.workers, "size": args.size, "images": count}))
            else:
                print(f"{name:<28} {rate:8.1f} images/s  ({per_worker:6.1f} per worker, {args.workers} workers, "
                      f"{count} images, {args.size} px)")
        base = results["torchvision baseline"]
        print(f"ratio ours / baseline: {results['ours'] / base:.2f}x "
              f"(with photometric distortions: {results['ours + paper photometric'] / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
