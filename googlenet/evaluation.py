"""Multi-crop evaluation (1, 10, 144 crops) of a train.py checkpoint or of torchvision weights."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from data.checks import check_bool, check_choice, check_number
from data.classes import class_names, imagenet_classes
from data.datasets import ImageFolderDataset, collate_readable
from data.device_ops import BatchNormalizer
from data.files import check_writable_file, write_atomic
from data.loaders import dataset_root, eval_resize
from data.multicrop import CROP_MODES, MultiCropTransform
from data.samplers import EpochSampler

from . import distributed as D
from .checkpoint import is_checkpoint, load_checkpoint, read_weights_file, state_dict_in
from .errors import UserError
from .models.convert import load_torchvision_weights
from .models.layers import AUX_PREFIXES
from .models.registry import INPUT_SIZE, PRESETS, build_from_config, build_model, check_input_size
from .runtime import build_runtime, check_runtime_config, resolve_device

# Single-model top-5 error of GoogLeNet in the paper (Table 3), by crops per image.
PAPER_TOP5_ERROR = {1: 10.07, 10: 9.15, 144: 7.89}
TORCHVISION_PRESETS = ("inception_v1_torchvision", "inception_v3_torchvision")


def check_evaluation_config(cfg) -> None:
    if not cfg.get("ckpt"):
        raise UserError("ckpt is required: python evaluate.py ckpt=runs/.../checkpoints/best.pt")
    if cfg.get("model") is not None:
        check_choice(cfg, "model.name", list(PRESETS))
    check_choice(cfg, "crops", list(CROP_MODES))
    check_choice(cfg, "ema", ["auto", True, False])
    check_runtime_config(cfg)
    check_number(cfg, "data.batch_size", integer=True, low=1)
    check_number(cfg, "data.workers", integer=True, low=0)
    check_number(cfg, "crop_batch", integer=True, low=1)
    check_number(cfg, "trainer.limit_val_batches", integer=True, low=1, optional=True)
    check_number(cfg, "data.crop_size", integer=True, low=16, optional=True)
    check_number(cfg, "data.eval_resize", integer=True, low=16, optional=True)
    check_bool(cfg, "per_class")
    from .distributed import check_dist_config
    check_dist_config(cfg)


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    classes: list[str]
    names: list[str]
    data_cfg: dict          # the data settings the weights were trained with (root, crop size, ...)
    weights: str            # "raw", "ema" or "torchvision"


def load_for_eval(cfg) -> LoadedModel:
    """The model of `ckpt=`: a train.py checkpoint, or bare weights (torchvision's) for a *_torchvision preset.
    What the file holds decides, not its name."""
    path = Path(str(cfg.ckpt)).expanduser()
    content = read_weights_file(path)
    requested = cfg.model.name if cfg.get("model") else None
    if not is_checkpoint(content):
        state = state_dict_in(content)
        if state is None:
            raise UserError(f"{path} is neither a checkpoint written by train.py nor a state dict of weights")
        return _load_torchvision(requested, path, state)
    state = load_checkpoint(path, required=("model", "config", "classes"))
    saved = state["config"]
    name = saved["model"]["name"]
    if requested is not None and requested != name:
        raise UserError(f"checkpoint {path} holds model {name}, not {requested}; drop model= or pass the right ckpt")
    model = build_from_config(saved["model"])
    use_ema = state.get("ema") is not None if cfg.ema == "auto" else bool(cfg.ema)
    if use_ema and state.get("ema") is None:
        raise UserError(f"checkpoint {path} has no EMA weights (trained with ema.enabled=false); use ema=false")
    try:
        model.load_state_dict(state["ema"]["model"] if use_ema else state["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not fit model {name}: {str(e).splitlines()[0]}") from None
    return LoadedModel(model, name, list(state["classes"]), list(state.get("class_names") or state["classes"]),
                       saved["data"], "ema" if use_ema else "raw")


def _load_torchvision(name: str | None, path: Path, state: dict) -> LoadedModel:
    if name not in TORCHVISION_PRESETS:
        raise UserError(f"{path} holds bare weights (torchvision's?); add model=inception_v1_torchvision "
                        "(googlenet) or model=inception_v3_torchvision (inception_v3)")
    model = build_model(name, aux_logits=any(k.startswith(AUX_PREFIXES) for k in state))
    load_torchvision_weights(model, state)
    wnids = [w for w, _ in imagenet_classes()]
    size = INPUT_SIZE[name]
    data_cfg = {"name": "imagenet", "root": os.environ.get("IMAGENET_ROOT"), "crop_size": size,
                "eval_resize": round(size / 0.875)}
    return LoadedModel(model, name, wnids, class_names(wnids), data_cfg, "torchvision")


def _data_settings(cfg, loaded: LoadedModel):
    merged = dict(loaded.data_cfg)
    for key in ("root", "crop_size", "eval_resize", "fast_decode"):
        if cfg.data.get(key) is not None:
            merged[key] = cfg.data[key]
    merged.setdefault("fast_decode", True)
    return OmegaConf.create(merged)


def default_output(cfg) -> Path:
    ckpt = Path(str(cfg.ckpt)).expanduser()
    return ckpt.with_name(f"{ckpt.stem}.eval-{cfg.data.val_split}-{cfg.crops}crop.json")


@torch.no_grad()
def run_evaluation(cfg) -> dict:
    """Evaluate and return the results dict (also written as JSON on rank 0)."""
    device = resolve_device(cfg.trainer.device)
    env = D.init_distributed(cfg.dist, device.type)
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    t = cfg.trainer
    runtime = build_runtime(device, t.precision, t.channels_last, t.cudnn_benchmark)
    try:
        return _evaluate(cfg, runtime, env)
    finally:
        D.shutdown(env)


def _evaluate(cfg, runtime, env) -> dict:
    device, split = runtime.device, cfg.data.val_split
    output = check_writable_file(cfg.output or default_output(cfg), "output") if env.is_main else None
    loaded = load_for_eval(cfg)
    data_cfg = _data_settings(cfg, loaded)
    size, resize = int(data_cfg.crop_size), eval_resize(data_cfg)
    if resize < size:
        raise UserError(f"data.crop_size={size} is larger than the resize before cropping ({resize}); raise "
                        f"data.eval_resize to {size} or more, or lower data.crop_size")
    if is_dataclass(getattr(loaded.model, "cfg", None)):  # one of our networks (tests use stand-ins)
        check_input_size(loaded.name, asdict(loaded.model.cfg), size)
    root = dataset_root(data_cfg)
    dataset = ImageFolderDataset(root, split, MultiCropTransform(cfg.crops, size, resize, data_cfg.fast_decode),
                                 replace_unreadable=False)
    if dataset.classes != loaded.classes:
        raise UserError(f"{root / split} has {len(dataset.classes)} classes but the model was trained on "
                        f"{len(loaded.classes)} (or in another order); evaluate on the dataset it was trained for")
    sampler = EpochSampler(len(dataset), shuffle=False, rank=env.rank, world_size=env.world_size, pad=False)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=cfg.data.workers,
                        collate_fn=collate_readable, pin_memory=device.type == "cuda")
    model = runtime.prepare(loaded.model).eval()
    if cfg.trainer.compile:
        model = torch.compile(model)
    normalizer = BatchNormalizer(channels_last=runtime.channels_last).to(device).eval()
    num_classes = len(loaded.classes)
    per_class = torch.zeros(3, num_classes, device=device, dtype=torch.float64)  # images, top1, top5
    unreadable: list[str] = []
    total_batches = min(len(loader), cfg.trainer.limit_val_batches or len(loader))
    start = time.perf_counter()
    for i, (images, targets, bad) in enumerate(loader):
        if i >= total_batches:
            break
        unreadable += bad
        if images is None:
            continue
        images = images.to(device, non_blocking=True)          # (B, crops, 3, S, S) uint8
        targets = targets.to(device, non_blocking=True)
        b, n = images.shape[:2]
        flat = images.flatten(0, 1)
        probs = torch.empty(b * n, num_classes, device=device)
        for j in range(0, b * n, cfg.crop_batch):
            x = normalizer(flat[j:j + cfg.crop_batch])
            with runtime.autocast():
                logits = model(x)
            probs[j:j + cfg.crop_batch] = logits.float().softmax(dim=1)
        mean_probs = probs.view(b, n, num_classes).mean(dim=1)   # average probabilities, not logits
        top5 = mean_probs.topk(min(5, num_classes), dim=1).indices
        hit1 = top5[:, 0].eq(targets)
        hit5 = top5.eq(targets.view(-1, 1)).any(dim=1)
        per_class[0].index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        per_class[1].index_add_(0, targets, hit1.double())
        per_class[2].index_add_(0, targets, hit5.double())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    D.all_reduce_sum(per_class, env)
    counts = per_class.sum(dim=1).tolist()
    images_seen = int(counts[0])
    if images_seen == 0:
        raise UserError(f"no readable images evaluated in {root / split}")
    top1, top5 = 100 * counts[1] / images_seen, 100 * counts[2] / images_seen
    results = {
        "ckpt": str(cfg.ckpt), "model": loaded.name, "weights": loaded.weights, "split": split,
        "root": str(root), "crops": cfg.crops, "crop_size": size, "resize": resize,
        "images": images_seen, "top1": top1, "top5": top5, "top1_error": 100 - top1, "top5_error": 100 - top5,
        "images_per_sec": images_seen / elapsed, "crops_per_sec": images_seen * cfg.crops / elapsed,
        "seconds": elapsed, "unreadable": unreadable, "device": str(device), "precision": runtime.precision,
        "processes": env.world_size,
    }
    if loaded.name.startswith("inception_v1"):
        results["paper_top5_error"] = PAPER_TOP5_ERROR[cfg.crops]
    if env.is_main:
        write_atomic(output, json.dumps(results, indent=2) + "\n")
        results["output"] = str(output)
        if cfg.per_class:
            rows = per_class.tolist()
            lines = [["index", "class", "name", "images", "top1", "top5"]]
            for k in range(num_classes):
                n = rows[0][k]
                lines.append([k, loaded.classes[k], loaded.names[k], int(n),
                              f"{100 * rows[1][k] / n:.2f}" if n else "", f"{100 * rows[2][k] / n:.2f}" if n else ""])
            csv_path = output.with_suffix(".per_class.csv")
            text = io.StringIO(newline="")
            csv.writer(text).writerows(lines)
            write_atomic(csv_path, text.getvalue())
            results["per_class_csv"] = str(csv_path)
    return results


def evaluate(cfg) -> int:
    results = run_evaluation(cfg)
    if "output" in results:
        print(f"{results['model']} ({results['weights']} weights), {results['split']}: {results['images']:,} images "
              f"x {results['crops']} crops at {results['crop_size']} px")
        print(f"top-1 {results['top1']:.2f}% (error {results['top1_error']:.2f}%), "
              f"top-5 {results['top5']:.2f}% (error {results['top5_error']:.2f}%)"
              + (f"; paper: {results['paper_top5_error']}% top-5 error" if "paper_top5_error" in results else ""))
        print(f"{results['images_per_sec']:.1f} images/s ({results['crops_per_sec']:.1f} crops/s) on "
              f"{results['device']}, {results['precision']}")
        if results["unreadable"]:
            print(f"skipped {len(results['unreadable'])} unreadable image(s): {', '.join(results['unreadable'][:10])}")
        print(f"results: {results['output']}")
    return 0
