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
    problem = _problem(record)
    if problem:
        raise UserError(f"{path} is damaged: {problem}; write it again with evaluate.py save_probs=true")
    return record


def _problem(r: dict) -> str | None:
    """What is wrong with a probabilities record (shapes, types, values), or None."""
    probs, labels = r.get("probs"), r.get("labels")
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        return "its probabilities are not a 2-D float tensor"
    n, classes = probs.shape
    for key in ("images", "classes"):
        if not isinstance(r.get(key), list) or not all(isinstance(x, str) for x in r[key]):
            return f"its {key} are not a list of names"
    if len(r["images"]) != n or len(r["classes"]) != classes:
        return (f"{n} x {classes} probabilities for {len(r['images'])} images and {len(r['classes'])} classes")
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point() \
            or (n and (labels.min() < 0 or labels.max() >= classes)):
        return f"its labels are not {n} class indices"
    for key in ("model", "ckpt", "split", "root"):
        if not isinstance(r.get(key), str):
            return f"its {key} is not a string"
    if r.get("crops") not in (1, 10, 144) or isinstance(r.get("crops"), bool):
        return f"crops={r.get('crops')!r} is not 1, 10 or 144"
    if not torch.isfinite(probs).all() or (n and (probs.min() < 0 or probs.max() > 1.001)):
        return "it holds probabilities that are not finite numbers between 0 and 1"
    return None


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
    for crops, group in groups.items():
        seen: dict[str, Path] = {}
        for path, r in group:
            if r["ckpt"] in seen:
                raise UserError(f"{seen[r['ckpt']]} and {path} both hold {crops}-crop probabilities of {r['ckpt']}: "
                                "an ensemble counts each model once; drop one of them")
            seen[r["ckpt"]] = path
    models = {crops: sorted(r["ckpt"] for _, r in group) for crops, group in groups.items()}
    if len({tuple(m) for m in models.values()}) > 1:
        listed = "; ".join(f"{crops} crop(s): {', '.join(m)}" for crops, m in sorted(models.items()))
        raise UserError(f"the probability files are of different models for each crop mode ({listed}); pass the "
                        "files of the same models for every crop mode")
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
