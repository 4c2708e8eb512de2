"""Per-model probabilities on disk (save_probs=true) and ensembles recombined from them (probs=[...]).

One file per model and crop mode, next to its checkpoint: `<ckpt stem>.<split>-<crops>crop.probs.pt`, holding
the crop-averaged softmax probabilities as float16, one row per image, with the image list (relative to the
dataset root), the labels and the class list. Files load with `weights_only=True` (tensors, strings, numbers).
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.errors import UserError
from common.files import write_atomic

from ..checkpoint import read_weights_file
from .passes import ensemble_hits

FORMAT = "googlenet-probs/1"


def probs_path(ckpt: Path, split: str, crops: int) -> Path:
    return ckpt.with_name(f"{ckpt.stem}.{split}-{crops}crop.probs.pt")


def save_probs(path: Path, probs: torch.Tensor, *, images: list[str], labels: torch.Tensor, classes: list[str],
               model: str, ckpt: str, crops: int, split: str, root: str) -> Path:
    record = {"format": FORMAT, "probs": probs.half(), "images": list(images), "labels": labels.long(),
              "classes": list(classes), "model": model, "ckpt": ckpt, "crops": crops, "split": split, "root": root}
    return write_atomic(path, lambda f: torch.save(record, f))


def load_probs(path: Path) -> dict:
    record = read_weights_file(path, "probabilities file")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{path} is not a probabilities file written by evaluate.py save_probs=true")
    return record


def group_by_crops(records: list[tuple[Path, dict]]) -> dict[int, list[tuple[Path, dict]]]:
    """Files grouped by crop mode; every file must describe the same images, labels and classes."""
    first_path, first = records[0]
    for path, r in records[1:]:
        for key, what in (("split", "split"), ("images", "image list"), ("classes", "class list")):
            if r[key] != first[key]:
                raise UserError(f"{path} holds probabilities for another {what} than {first_path} "
                                f"({r['split']} vs {first['split']} split); combine files of one evaluation")
        if not torch.equal(r["labels"], first["labels"]):
            raise UserError(f"{path} has other labels than {first_path}; combine files of one evaluation")
    groups: dict[int, list] = {}
    for path, r in records:
        groups.setdefault(int(r["crops"]), []).append((path, r))
    counts = {len(v) for v in groups.values()}
    if len(counts) > 1:
        raise UserError("the probability files give different numbers of models per crop mode "
                        f"({ {k: len(v) for k, v in groups.items()} }); pass the same models for every mode")
    return dict(sorted(groups.items()))


def recombined_hits(groups: dict[int, list[tuple[Path, dict]]], sizes: list[int]) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    """(hits (len(sizes), modes, 2), single (models, modes, 2)), as `passes.run_pass` counts them."""
    modes = list(groups)
    models = len(groups[modes[0]])
    hits = torch.zeros(len(sizes), len(modes), 2, dtype=torch.float64)
    single = torch.zeros(models, len(modes), 2, dtype=torch.float64)
    for j, mode in enumerate(modes):
        records = [r for _, r in groups[mode]]
        stacked = torch.stack([r["probs"] for r in records])
        targets = records[0]["labels"]
        hits[:, j] = ensemble_hits(stacked, targets, sizes)
        for m in range(models):
            single[m, j] = ensemble_hits(stacked[m:m + 1], targets, [1])[0]
    return hits, single
