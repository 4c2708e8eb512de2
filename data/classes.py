"""ImageNet class list: index = sorted wnid order, as torchvision and public checkpoints use."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.tsv")


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1000 (wnid, human-readable name) pairs in class-index order."""
    rows = [line.split("\t") for line in CLASSES_FILE.read_text().splitlines() if line.strip()]
    return tuple(sorted((wnid, name) for wnid, name in rows))


def class_names(wnids: list[str]) -> list[str]:
    """Human-readable names for a list of folder names; unknown folders keep their own name."""
    names = dict(imagenet_classes())
    return [names.get(w, w) for w in wnids]
