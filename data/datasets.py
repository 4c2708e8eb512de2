"""Image-folder datasets (`ROOT/<split>/<class>/*`) that survive unreadable files."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import UserError

from .imaging import UnreadableImage

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The random stream of one sample in one epoch: independent of workers, ranks and batch order."""
    return random.Random(f"{seed}:{epoch}:{index}")


ROOT_HINT = "set data.root (or IMAGENET_ROOT) to a folder with train/ and val/ (scripts/prepare_imagenet.py)"


def existing_root(root: str | Path, hint: str = ROOT_HINT) -> Path:
    """The dataset root as a Path; a one-line UserError when it is not a folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset root {root} does not exist; {hint}")
    return root


def scan_split(root: str | Path, split: str, fix_hint: str = "") -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folder names and (path, class index) pairs; one-line UserErrors for a broken layout."""
    hint = fix_hint or ROOT_HINT
    root = existing_root(root, hint)
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"dataset split {split_dir} does not exist; {hint}")
    classes = sorted(e.name for e in _entries(split_dir) if not e.name.startswith(".") and _is(e, "dir"))
    if not classes:
        raise UserError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image>; {hint}")
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        files = sorted(e.path for e in _entries(split_dir / name)
                       if e.name.lower().endswith(IMAGE_EXTENSIONS) and _is(e, "file"))
        if not files:
            raise UserError(f"class folder {split_dir / name} has no images; remove it or add its images")
        samples.extend((path, index) for path in files)
    return classes, samples


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as e:
        raise UserError(f"cannot list {folder}: {e.strerror}; fix its permissions or links") from None


def _is(entry: os.DirEntry, kind: str) -> bool:
    """entry.is_dir() / is_file(), following links; a symbolic link loop is an error that names the link."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError as e:
        raise UserError(f"{entry.path}: {e.strerror} (a symbolic link loop?); remove or fix that link") from None


class ImageFolderDataset(Dataset):
    """Indexed by (index, epoch) pairs from `EpochSampler` (or a plain int, epoch 0).

    Returns (uint8 CHW image, class index, skipped) where `skipped` is the tuple of unreadable files that were
    replaced by the next readable sample (empty when none), so the trainer can count and report them.
    With `replace_unreadable=False` (evaluation, where a stand-in would be counted twice) an unreadable
    file gives (None, class index, its path) instead; `collate_readable` drops those.
    """

    def __init__(self, root, split: str, transform: Callable, seed: int = 0, classes: list[str] | None = None,
                 fix_hint: str = "", replace_unreadable: bool = True):
        self.root, self.split = Path(root), split
        found, samples = scan_split(root, split, fix_hint)
        # Numpy arrays rather than a list of 1.28M (str, int) tuples: forked loader workers would otherwise
        # copy the list page by page as reference counts change (copy-on-read), once per worker.
        self._paths = np.array([os.fsencode(p) for p, _ in samples])
        self._targets = np.array([t for _, t in samples], dtype=np.int64)
        if classes is not None and list(classes) != found:
            raise UserError(f"{self.root / split} has {len(found)} classes that differ from the "
                            f"{len(classes)} expected; train and val splits must have the same class folders")
        self.classes = found
        self.transform = transform
        self.seed = seed
        self.replace_unreadable = replace_unreadable

    @property
    def samples(self) -> list[tuple[str, int]]:
        """(path, class index) pairs, for inspection."""
        return [(os.fsdecode(p), int(t)) for p, t in zip(self._paths, self._targets)]

    @property
    def targets(self) -> list[int]:
        return self._targets.tolist()

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        skipped = []
        for offset in range(len(self)):
            k = (index + offset) % len(self)
            path, target = os.fsdecode(self._paths[k]), int(self._targets[k])
            try:
                image = self.transform(path, sample_rng(self.seed, epoch, index))
                return image, target, tuple(skipped)
            except UnreadableImage:
                if not self.replace_unreadable:
                    return None, target, path
                skipped.append(path)
        raise UserError(f"no readable image in {self.root / self.split}; check the files")


def collate_train(batch):
    """(images, targets, the unreadable files this batch's samples replaced, photometric factors (B, 4))."""
    outputs, targets, skipped = zip(*batch)
    images, factors = zip(*outputs)
    return (torch.stack(images), torch.tensor(targets), [p for paths in skipped for p in paths],
            torch.tensor(factors, dtype=torch.float32))


def collate_readable(batch):
    """Stack the readable samples of a batch: (images, targets, unreadable paths). Images may be tensors or
    dicts (evaluation views), stacked key by key (values that are not tensors are listed); None when no sample
    of the batch was readable."""
    readable = [(image, target) for image, target, _ in batch if image is not None]
    unreadable = [path for image, _, path in batch if image is None]
    if not readable:
        return None, None, unreadable
    first = readable[0][0]
    if isinstance(first, dict):  # tensors stacked; other values (decoded images of different sizes) listed
        images = {key: torch.stack([image[key] for image, _ in readable]) if torch.is_tensor(first[key])
                  else [image[key] for image, _ in readable] for key in first}
    else:
        images = torch.stack([image for image, _ in readable])
    return images, torch.tensor([t for _, t in readable]), unreadable
