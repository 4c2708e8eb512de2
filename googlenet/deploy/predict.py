"""predict.py: the top-k classes of image files, with their names and probabilities, as text, JSON and CSV."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from common.checks import check_bool, check_choice, check_number
from common.errors import UserError
from common.files import check_writable_file, shown, write_atomic
from common.progress import ProgressLine
from data.datasets import IMAGE_EXTENSIONS
from data.device_ops import BatchNormalizer
from data.imaging import UnreadableImage
from data.loaders import ignore_stop_signals
from data.multicrop import CROP_MODES, EvalViews
from data.workers import check_workers, loader_workers

from ..checkpoint import WEIGHT_CHOICES
from ..evaluation.models import load_for_eval
from ..evaluation.passes import crop_averaged_probs
from ..models.registry import PRESETS
from ..runtime import check_runtime_config, runtime_from_config


def check_predict_config(cfg) -> None:
    if not cfg.get("ckpt") or not cfg.get("images"):
        raise UserError("ckpt and images are required: python predict.py ckpt=best.pt images=photo.jpg|folder")
    if cfg.get("model") is not None:
        check_choice(cfg, "model.name", list(PRESETS))
    check_choice(cfg, "crops", list(CROP_MODES))
    check_choice(cfg, "weights", list(WEIGHT_CHOICES))
    check_number(cfg, "topk", integer=True, low=1)
    check_number(cfg, "data.batch_size", integer=True, low=1)
    check_workers(cfg)
    check_number(cfg, "crop_batch", integer=True, low=1)
    check_bool(cfg, "quiet")
    check_runtime_config(cfg)


# Pseudo-filesystems: their "files" are the kernel's, and their links lead back to the whole filesystem.
NOT_IMAGE_FOLDERS = ("/proc", "/sys", "/dev")


def list_images(path: str | Path) -> list[Path]:
    """One image, or every image under a folder, recursively, in sorted order. Links to folders are followed
    only inside the folder's own tree (once per real folder), never out of it and never into /proc, /sys or /dev;
    only regular files are taken (opening a FIFO would block, a link to a device would read forever)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"images={path} does not exist; pass an image file or a folder of images")
    top = os.path.realpath(path)
    if _inside_any(top, NOT_IMAGE_FOLDERS):
        raise UserError(f"images={path} is a system folder ({top}), not a folder of images; pass your own folder")
    found, seen = [], set()
    for folder, subfolders, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen or not _inside_any(real, (top,)) or _inside_any(real, NOT_IMAGE_FOLDERS):
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort(key=lambda name: (os.path.islink(os.path.join(folder, name)), name))  # real names first
        found += [Path(folder) / f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
                  and (Path(folder) / f).is_file()]
    if not found:
        raise UserError(f"images={path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(found)


def _inside_any(real: str, folders) -> bool:
    return any(real == f or real.startswith(f.rstrip("/") + "/") for f in folders)


class ImageFiles(Dataset):
    def __init__(self, paths: list[Path], views: EvalViews):
        self.paths, self.views = paths, views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, self.views(self.paths[i]), None
        except UnreadableImage as e:
            return i, None, str(e).split(": ", 1)[-1]


def collate(batch):
    readable = [(i, views) for i, views, _ in batch if views is not None]
    problems = [(i, why) for i, views, why in batch if views is None]
    key = next(iter(readable[0][1])) if readable else None
    stacked = torch.stack([views[key] for _, views in readable]) if readable else None
    return [i for i, _ in readable], stacked, problems


@torch.no_grad()
def predict(cfg) -> dict:
    """Predictions for every image, written to `output` (JSON) and its .csv twin; unreadable files listed."""
    paths = list_images(cfg.images)
    if len(paths) > 1 or Path(paths[0]) != Path(str(cfg.images)).expanduser():
        print(f"found {len(paths)} image(s) under {shown(cfg.images)}", file=sys.stderr, flush=True)
    ckpt = Path(str(cfg.ckpt)).expanduser()
    output = check_writable_file(cfg.output or "predictions.json", "output", [*paths, ckpt], (".csv",))
    loaded = load_for_eval(cfg, Path(str(cfg.ckpt)).expanduser())
    runtime = runtime_from_config(cfg.runtime)
    geometry = loaded.geometry(cfg)
    loader = DataLoader(ImageFiles(paths, EvalViews([geometry], (cfg.crops,))), batch_size=cfg.data.batch_size,
                        num_workers=loader_workers(cfg.data.workers), collate_fn=collate,
                        worker_init_fn=ignore_stop_signals)
    model = runtime.prepare(loaded.model).eval()
    normalizer = BatchNormalizer(channels_last=runtime.channels_last).to(runtime.device).eval()
    k = min(cfg.topk, len(loaded.classes))
    records: list[dict] = [{} for _ in paths]
    line = ProgressLine("predicting", len(loader))
    for indices, views, problems in loader:
        line.update(len(indices) + len(problems))
        for i, why in problems:
            records[i] = {"image": str(paths[i]), "error": f"unreadable: {why}"}
        if views is None:
            continue
        probs = crop_averaged_probs(model, views, normalizer, runtime, cfg.crop_batch).float()
        top = probs.topk(k, dim=1)
        for row, i in enumerate(indices):
            records[i] = {"image": str(paths[i]), "predictions": [
                {"rank": r + 1, "index": c, "class": loaded.classes[c], "name": loaded.names[c],
                 "probability": round(p, 6)}
                for r, (c, p) in enumerate(zip(top.indices[row].tolist(), top.values[row].tolist()))]}
    result = {"ckpt": str(cfg.ckpt), "model": loaded.name, "weights": loaded.weights, "crops": cfg.crops,
              "topk": k, "images": records}
    write_atomic(output, json.dumps(result, indent=2) + "\n")
    write_atomic(output.with_suffix(".csv"), _csv(records))
    result["output"], result["csv"] = str(output), str(output.with_suffix(".csv"))
    return result


def _csv(records: list[dict]) -> str:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["image", "rank", "class", "name", "probability", "error"])
    for r in records:
        if "error" in r:
            writer.writerow([r["image"], "", "", "", "", r["error"]])
        for p in r.get("predictions", []):
            writer.writerow([r["image"], p["rank"], p["class"], p["name"], f"{p['probability']:.6f}", ""])
    return text.getvalue()


def run_predict(cfg) -> int:
    result = predict(cfg)
    for r in result["images"]:
        if "error" in r:
            print(f"{shown(r['image'])}: {shown(r['error'])}")
        elif not cfg.quiet:
            top = "  ".join(f"{p['rank']}. {p['name']} {100 * p['probability']:.1f}%" for p in r["predictions"])
            print(f"{shown(r['image'])}: {top}")
    print(f"predictions: {result['output']} and {result['csv']}")
    return 0
