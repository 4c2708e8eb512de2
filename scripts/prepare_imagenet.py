"""Turn the official ILSVRC2012 downloads into ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG.

    python scripts/prepare_imagenet.py --out /data/imagenet \\
        --train-tar ILSVRC2012_img_train.tar --val-tar ILSVRC2012_img_val.tar \\
        --val-labels LOC_val_solution.csv          # or: --devkit ILSVRC2012_devkit_t12.tar.gz

The training tar holds one tar per class; the validation tar is flat, labelled either by Kaggle's
LOC_val_solution.csv, by a "<file> <wnid>" text file, or by the devkit (its ground-truth file plus
meta.mat, which needs scipy). Resumable and idempotent: finished class folders and images are skipped,
partial work lives under dot-names until it is complete. Sources are only read, never changed.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from tqdm import tqdm

FULL_COUNTS = {"train": 1_281_167, "val": 50_000}


class PrepareError(Exception):
    pass


def _open_tar(path: Path, stream: bool = True) -> tarfile.TarFile:
    if not path.is_file():
        raise PrepareError(f"{path} not found; pass the path of the downloaded tar")
    try:
        return tarfile.open(path, "r|*" if stream else "r:*")
    except tarfile.TarError as e:
        raise PrepareError(f"{path} is not a readable tar ({e}); download it again") from None


def _count_images(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")) if folder.is_dir() else 0


def prepare_train(train_tar: Path, out: Path, quiet: bool = False) -> int:
    """Extract each per-class tar into out/train/<wnid>; returns the number of images on disk."""
    train_dir = out / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    outer = _open_tar(train_tar)
    done = 0
    try:
        for member in tqdm(outer, desc="train classes", unit="class", disable=quiet):
            if not member.isfile():
                continue
            name = Path(member.name).name
            if not name.endswith(".tar"):
                raise PrepareError(f"{train_tar} holds {member.name}, not per-class tars; "
                                   "is this ILSVRC2012_img_train.tar?")
            wnid = name[:-4]
            final = train_dir / wnid
            if final.is_dir():  # finished in an earlier run
                done += 1
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f".{wnid}.", dir=train_dir))
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|*") as inner:
                for image in inner:
                    if image.isfile():
                        data = inner.extractfile(image).read()
                        (tmp / Path(image.name).name).write_bytes(data)
            os.rename(tmp, final)
            done += 1
    except tarfile.TarError as e:
        raise PrepareError(f"{train_tar} is truncated or corrupt ({e}); download it again and re-run "
                           "(finished classes are kept)") from None
    finally:
        outer.close()
    if done == 0:
        raise PrepareError(f"{train_tar} held no per-class tars")
    return sum(_count_images(train_dir / d) for d in os.listdir(train_dir) if not d.startswith("."))


def read_val_labels(labels: Path | None, devkit: Path | None) -> dict[str, str]:
    """Validation file name -> wnid, from LOC_val_solution.csv, a '<file> <wnid>' text file or the devkit."""
    if devkit is not None:
        return _read_devkit(devkit)
    if labels is None or not labels.is_file():
        raise PrepareError(f"validation labels {labels} not found; pass --val-labels LOC_val_solution.csv "
                           "or --devkit ILSVRC2012_devkit_t12.tar.gz")
    mapping: dict[str, str] = {}
    if labels.suffix == ".csv":
        with labels.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
                raise PrepareError(f"{labels} lacks the ImageId,PredictionString header of LOC_val_solution.csv")
            for row in reader:
                mapping[row["ImageId"] + ".JPEG"] = row["PredictionString"].split()[0]
    else:
        for line in labels.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                mapping[Path(parts[0]).name] = parts[-1]
    if not mapping:
        raise PrepareError(f"{labels} holds no labels")
    return mapping


def _read_devkit(devkit: Path) -> dict[str, str]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise PrepareError("reading the devkit's meta.mat needs scipy (pip install scipy); "
                           "or pass --val-labels LOC_val_solution.csv instead") from None
    if not devkit.exists():
        raise PrepareError(f"devkit {devkit} not found")
    with tempfile.TemporaryDirectory() as tmp:
        if devkit.is_dir():
            root = devkit
        else:
            with tarfile.open(devkit) as tar:
                tar.extractall(tmp, filter="data")
            root = Path(tmp)
        meta = next(root.rglob("meta.mat"), None)
        truth = next(root.rglob("ILSVRC2012_validation_ground_truth.txt"), None)
        if meta is None or truth is None:
            raise PrepareError(f"{devkit} lacks data/meta.mat or the validation ground-truth file")
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
        ids = [int(x) for x in truth.read_text().split()]
    return {f"ILSVRC2012_val_{i + 1:08d}.JPEG": id_to_wnid[label] for i, label in enumerate(ids)}


def prepare_val(val_tar: Path, labels: dict[str, str], out: Path, quiet: bool = False) -> int:
    val_dir = out / "val"
    val_dir.mkdir(parents=True, exist_ok=True)
    tar = _open_tar(val_tar)
    seen = 0
    try:
        for member in tqdm(tar, desc="val images", unit="img", disable=quiet):
            if not member.isfile():
                continue
            name = Path(member.name).name
            if name not in labels:
                raise PrepareError(f"{name} in {val_tar} has no label; are the labels for this validation set?")
            target = val_dir / labels[name] / name
            seen += 1
            if target.is_file():
                continue
            target.parent.mkdir(exist_ok=True)
            tmp = target.with_name(f".{name}.partial")
            tmp.write_bytes(tar.extractfile(member).read())
            os.replace(tmp, target)
    except tarfile.TarError as e:
        raise PrepareError(f"{val_tar} is truncated or corrupt ({e}); download it again and re-run") from None
    finally:
        tar.close()
    if seen == 0:
        raise PrepareError(f"{val_tar} held no images")
    return sum(_count_images(val_dir / d) for d in os.listdir(val_dir) if not d.startswith("."))


def check_counts(counts: dict[str, int]) -> list[str]:
    lines = []
    for split, n in counts.items():
        full = FULL_COUNTS[split]
        status = "complete ImageNet-1k split" if n == full else f"expected {full:,} for the full set"
        lines.append(f"{split}: {n:,} images ({status})")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="dataset root to create (ROOT/train, ROOT/val)")
    p.add_argument("--train-tar", type=Path, help="ILSVRC2012_img_train.tar")
    p.add_argument("--val-tar", type=Path, help="ILSVRC2012_img_val.tar")
    p.add_argument("--val-labels", type=Path, help="LOC_val_solution.csv or a '<file> <wnid>' text file")
    p.add_argument("--devkit", type=Path, help="ILSVRC2012_devkit_t12.tar.gz (or its extracted folder)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not args.train_tar and not args.val_tar:
        p.error("pass --train-tar and/or --val-tar")
    counts = {}
    try:
        if args.val_tar:
            labels = read_val_labels(args.val_labels, args.devkit)
        if args.train_tar:
            counts["train"] = prepare_train(args.train_tar, args.out, args.quiet)
        if args.val_tar:
            counts["val"] = prepare_val(args.val_tar, labels, args.out, args.quiet)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in check_counts(counts):
        print(line)
    print(f"ready: data.root={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
