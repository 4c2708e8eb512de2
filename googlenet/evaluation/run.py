"""evaluate.py: one model or an ensemble, 1 / 10 / 144 crops or all three, a report in the paper's Table 3 form."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from common.checks import check_bool, check_choice, check_number, get, is_int
from common.errors import UserError
from common.files import check_writable_file, shown, write_atomic
from common.progress import ProgressLine
from data.classes import imagenet_classes
from data.datasets import ImageFolderDataset, collate_readable
from data.loaders import dataset_root, ignore_stop_signals
from data.multicrop import CROP_MODES, EvalViews
from data.samplers import EpochSampler
from data.workers import check_workers, loader_workers

from .. import distributed as D
from ..checkpoint import WEIGHT_CHOICES
from ..models.registry import PRESETS, check_input_size
from ..provenance import provenance
from ..runtime import check_runtime_config, start
from .models import LoadedModel, expand_paths, load_for_eval
from .passes import PassResult, add_per_class, ensemble_top5, run_pass
from .probs import group_by_crops, load_probs, probs_path, recombined_hits, save_probs
from .table import markdown_table, plot_table, table_rows, text_table


def check_evaluation_config(cfg) -> None:
    ckpt, probs = cfg.get("ckpt"), cfg.get("probs")
    if not ckpt and not probs:
        raise UserError("ckpt is required: python evaluate.py ckpt=runs/.../checkpoints/best.pt (a list or a glob "
                        "for an ensemble; or probs=... to recombine saved probabilities)")
    if ckpt and probs:
        raise UserError("pass ckpt= (run the networks) or probs= (recombine saved probabilities), not both")
    if cfg.get("model") is not None:
        check_choice(cfg, "model.name", list(PRESETS))
    check_choice(cfg, "crops", [*CROP_MODES, "all"])
    check_choice(cfg, "weights", list(WEIGHT_CHOICES))
    check_choice(cfg, "progress", ["auto", True, False])
    if cfg.data.root is None:
        raise UserError("data.root=null: pass the dataset folder, or data.root=auto for the one the checkpoint was "
                        "trained on")
    sizes = get(cfg, "ensemble_sizes")
    if sizes is not None and sizes != "all" and (not OmegaConf.is_list(sizes) or not sizes
                                                 or not all(is_int(k) and k >= 1 for k in sizes)):
        raise UserError(f"ensemble_sizes={sizes} must be null (1 and all models), all, or a list such as [1, 3, 7]")
    check_runtime_config(cfg)
    check_workers(cfg)
    for key in ("data.batch_size", "crop_batch"):
        check_number(cfg, key, integer=True, low=1)
    for key in ("limit_batches", "data.crop_size", "data.eval_resize"):
        check_number(cfg, key, integer=True, low=1 if "limit" in key else 16, optional=True)
    for key in ("per_class", "save_probs", "plot"):
        check_bool(cfg, key)
    D.check_dist_config(cfg)


def crop_modes(cfg) -> tuple[int, ...]:
    return CROP_MODES if cfg.crops == "all" else (int(cfg.crops),)


def ensemble_sizes(cfg, models: int) -> list[int]:
    spec = cfg.get("ensemble_sizes")
    if spec == "all":
        return list(range(1, models + 1))
    sizes = sorted({1, models} if spec is None else set(spec))
    too_many = [k for k in sizes if k > models]
    if too_many:
        raise UserError(f"ensemble_sizes={list(spec)} asks for {max(too_many)} models but {models} were given")
    return sizes


def written_beside(cfg) -> tuple[str, ...]:
    """The files written next to the JSON results (by suffix): the Markdown table, the plot, per-class CSV."""
    return (".md", *((".png",) if cfg.plot else ()), *((".per_class.csv",) if cfg.per_class else ()))


def default_output(cfg, paths: list[Path]) -> Path:
    crops = f"{cfg.crops}crop" if cfg.crops != "all" else "allcrops"
    if len(paths) == 1 and not cfg.get("probs"):
        return paths[0].with_name(f"{paths[0].stem}.eval-{cfg.data.val_split}-{crops}.json")
    common = Path(os.path.commonpath([str(p.parent.resolve()) for p in paths]))
    return common / f"ensemble{len(paths)}.eval-{cfg.data.val_split}-{crops}.json"


class WithIndex(Dataset):
    """(sample index, views, target, unreadable path) items: the index names the image of each row."""

    def __init__(self, dataset: ImageFolderDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return (key[0] if isinstance(key, tuple) else key, *self.dataset[key])


def collate_indexed(batch):
    indices = torch.tensor([index for index, image, _, _ in batch if image is not None], dtype=torch.long)
    views, targets, unreadable = collate_readable([item[1:] for item in batch])
    return indices, views, targets, unreadable


@torch.no_grad()
def run_evaluation(cfg) -> dict:
    """Evaluate and return the results dict (written as JSON, Markdown and PNG on rank 0)."""
    if cfg.get("probs"):
        return recombine(cfg)
    env, runtime = start(cfg.runtime, cfg.dist)
    try:
        results = _evaluate(cfg, runtime, env)
        D.barrier(env)  # the ranks leave together: rank 0 still writes files after the last collective
        return results
    finally:
        D.shutdown(env)


def class_difference(a: list[str], b: list[str]) -> str:
    """Where two class lists differ, in words a user can act on."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} classes"
    i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"class {i} is {a[i]!r} vs {b[i]!r}"


def _load_models(cfg, paths: list[Path]) -> tuple[list[LoadedModel], list]:
    models = [load_for_eval(cfg, p) for p in paths]
    for m in models[1:]:
        if m.classes != models[0].classes:
            raise UserError(f"{m.path} was trained on other classes than {models[0].path} "
                            f"({class_difference(m.classes, models[0].classes)}); an ensemble needs one class list")
    geometries = [m.geometry(cfg) for m in models]
    for m, g in zip(models, geometries):
        if is_dataclass(getattr(m.model, "cfg", None)):  # one of our networks (tests use stand-ins)
            check_input_size(m.name, asdict(m.model.cfg), g.size)
    return models, geometries


def cut_views_on_device(device) -> bool:
    """10- and 144-crop views are cut on a GPU (once per image for all models); on a CPU in the loader workers,
    which cut in parallel."""
    return torch.device(device).type == "cuda"


def _loader(cfg, models, geometries, modes, env, device):
    first = models[0].data_cfg
    root = first.get("root") if cfg.data.root == "auto" else cfg.data.root
    data_cfg = OmegaConf.create({"name": first.get("name", "imagenet"), "root": root})
    root = dataset_root(data_cfg)
    fast = cfg.data.fast_decode if cfg.data.get("fast_decode") is not None else first.get("fast_decode", True)
    views = EvalViews(list(dict.fromkeys(geometries)), modes, fast, cut_later=cut_views_on_device(device))
    dataset = ImageFolderDataset(root, cfg.data.val_split, views, replace_unreadable=False)
    if dataset.classes != models[0].classes:
        raise UserError(f"{root / cfg.data.val_split} has {len(dataset.classes)} classes but the model was trained "
                        f"on {len(models[0].classes)} (or in another order); evaluate on the dataset it was "
                        "trained for")
    sampler = EpochSampler(len(dataset), shuffle=False, rank=env.rank, world_size=env.world_size, pad=False)
    loader = DataLoader(WithIndex(dataset), batch_size=cfg.data.batch_size, sampler=sampler,
                        num_workers=loader_workers(cfg.data.workers), collate_fn=collate_indexed,
                        pin_memory=device.type == "cuda",
                        worker_init_fn=ignore_stop_signals)
    return root, dataset, loader


def _evaluate(cfg, runtime, env) -> dict:
    device, split, modes = runtime.device, cfg.data.val_split, crop_modes(cfg)
    paths = expand_paths(cfg.ckpt, "ckpt")
    output = check_writable_file(cfg.output or default_output(cfg, paths), "output", paths,
                                 written_beside(cfg)) if env.is_main else None
    models, geometries = _load_models(cfg, paths)
    sizes = ensemble_sizes(cfg, len(models))
    root, dataset, loader = _loader(cfg, models, geometries, modes, env, device)
    networks = []
    for m in models:
        net = runtime.prepare(m.model).eval()
        networks.append(torch.compile(net) if cfg.runtime.compile else net)
    limit = cfg.limit_batches
    batches = min(len(loader), limit or len(loader))
    bars = _bars(models, batches) if env.is_main and _progress(cfg) else None
    line = ProgressLine("evaluating", batches) if env.is_main and cfg.progress == "auto" and not bars else None
    result = run_pass(networks, geometries, loader, modes, sizes, len(models[0].classes), runtime, env,
                      cfg.crop_batch, keep_probs=cfg.save_probs, limit=limit, bars=bars,
                      on_batch=line.update if line else None)
    for bar in bars or []:
        bar.close()
    if result.images == 0:
        raise UserError(f"no readable images evaluated in {root / split}")
    results = _results(cfg, models, geometries, result, root, runtime, env)
    if env.is_main:
        if cfg.save_probs:
            results["probs_files"] = _save_probs(cfg, models, dataset, root, result)
        _write(cfg, results, output, result.per_class, models[0].classes, models[0].names)
    return results


def _progress(cfg) -> bool:
    setting = cfg.progress
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def _bars(models, total):
    from tqdm import tqdm
    return [tqdm(total=total, desc=f"model {i + 1}/{len(models)} {m.name}", position=i, unit="batch",
                 leave=False, dynamic_ncols=True) for i, m in enumerate(models)]


def papers_setting(names: list[str], classes: list[str], split: str) -> bool:
    """Whether the GoogLeNet paper's Table 3 numbers apply: GoogLeNet on ImageNet's 1000-class validation set."""
    return (all(n.startswith("inception_v1") for n in names) and split == "val"
            and list(classes) == [wnid for wnid, _ in imagenet_classes()])


def accuracy(hits, single, images: int, sizes: list[int], modes: tuple[int, ...], names: list[str],
             ckpts: list[str], paper: bool) -> dict:
    """The Table 3 rows (with the paper's numbers when `paper`), the headline (all models, the largest crop
    mode) and each model alone: what a direct run and a recombination from saved probabilities both report."""
    rows = table_rows(hits, images, sizes, modes, paper)
    headline = rows[-1]
    results = {"crops": modes[0] if len(modes) == 1 else "all", "images": images, "table": rows,
               "top1": 100 - headline["top1_error"], "top5": 100 - headline["top5_error"],
               "top1_error": headline["top1_error"], "top5_error": headline["top5_error"],
               "per_model": [{"ckpt": ckpt, "crops": crops, "top1_error": 100 - 100 * single[i, j, 0].item() / images,
                              "top5_error": 100 - 100 * single[i, j, 1].item() / images}
                             for i, ckpt in enumerate(ckpts) for j, crops in enumerate(modes)]}
    if "paper_top5_error" in headline:
        results["paper_top5_error"] = headline["paper_top5_error"]
    return results


def _results(cfg, models, geometries, result: PassResult, root, runtime, env) -> dict:
    forward_passes = result.images * len(models) * sum(result.modes)
    return {
        "models": [{"ckpt": str(m.path), "model": m.name, "weights": m.weights, "crop_size": g.size,
                    "resize": g.resize} for m, g in zip(models, geometries)],
        "ckpt": str(models[0].path), "model": models[0].name, "weights": models[0].weights,
        "crop_size": geometries[0].size, "resize": geometries[0].resize,
        "split": cfg.data.val_split, "root": str(root),
        **accuracy(result.hits, result.single, result.images, result.sizes, result.modes, [m.name for m in models],
                   [str(m.path) for m in models], papers_setting([m.name for m in models], models[0].classes,
                                                                 cfg.data.val_split)),
        "images_per_sec": result.images / result.seconds, "forward_passes_per_sec": forward_passes / result.seconds,
        "seconds": result.seconds, "unreadable": result.unreadable, "device": str(runtime.device),
        "precision": runtime.precision, "processes": env.world_size,
        "provenance": provenance(runtime.device, env.world_size),
    }


def _write(cfg, results: dict, output: Path, per_class: torch.Tensor, classes: list[str], names: list[str]) -> None:
    title = (f"{len(results['models'])} model(s), {results['split']} split, {results['images']:,} images: "
             f"{', '.join(sorted({m['model'] for m in results['models']}))}")
    results["output"] = str(output)
    results["markdown"] = str(write_atomic(output.with_suffix(".md"), markdown_table(results["table"], title)))
    if cfg.plot:
        results["plot"] = str(plot_table(results["table"], output.with_suffix(".png"), title))
    if cfg.per_class:
        rows = per_class.tolist()
        lines = [["index", "class", "name", "images", "top1", "top5"]]
        for k in range(len(classes)):
            n = rows[0][k]
            lines.append([k, classes[k], names[k], int(n),
                          f"{100 * rows[1][k] / n:.2f}" if n else "", f"{100 * rows[2][k] / n:.2f}" if n else ""])
        text = io.StringIO(newline="")
        csv.writer(text).writerows(lines)
        results["per_class_csv"] = str(write_atomic(output.with_suffix(".per_class.csv"), text.getvalue()))
    write_atomic(output, json.dumps(results, indent=2) + "\n")


def _save_probs(cfg, models, dataset: ImageFolderDataset, root: Path, result: PassResult) -> list[str]:
    samples = dataset.samples
    written = []
    for (m, mode), (indices, probs) in sorted(result.probs.items()):
        images = [os.path.relpath(samples[i][0], root) for i in indices.tolist()]
        labels = torch.tensor([samples[i][1] for i in indices.tolist()])
        path = probs_path(models[m].path, cfg.data.val_split, mode)
        written.append(str(save_probs(path, probs, images=images, labels=labels, classes=models[m].classes,
                                      model=models[m].name, ckpt=str(models[m].path), crops=mode,
                                      split=cfg.data.val_split, root=str(root))))
    return written


def recombine(cfg) -> dict:
    """An ensemble from saved probabilities (probs=[...]): no network runs, the numbers equal a direct run."""
    paths = expand_paths(cfg.probs, "probs")
    groups = group_by_crops([(p, load_probs(p)) for p in paths])
    modes = tuple(groups)
    first = groups[modes[0]][0][1]
    models = len(groups[modes[0]])
    sizes = ensemble_sizes(cfg, models)
    output = check_writable_file(cfg.output or default_output(cfg, [p for p, _ in groups[modes[0]]]), "output",
                                 paths, written_beside(cfg))
    hits, single = recombined_hits(groups, sizes)
    images = len(first["images"])
    stacked = torch.stack([r["probs"] for _, r in groups[modes[-1]]])
    top = ensemble_top5(stacked, [models])[0]
    per_class = torch.zeros(3, len(first["classes"]), dtype=torch.float64)
    add_per_class(per_class, top, first["labels"])
    records = [r for _, r in groups[modes[0]]]
    results = {
        "models": [{"ckpt": r["ckpt"], "model": r["model"], "probs": str(p)} for p, r in groups[modes[0]]],
        "split": first["split"], "root": first["root"],
        **accuracy(hits, single, images, sizes, modes, [r["model"] for r in records], [r["ckpt"] for r in records],
                   papers_setting([r["model"] for r in records], list(first["classes"]), first["split"])),
        "recombined_from": [str(p) for p in paths], "provenance": provenance(),
    }
    _write(cfg, results, output, per_class, list(first["classes"]), list(first["classes"]))
    return results


def evaluate(cfg) -> int:
    """evaluate.py's task: run, print the table and where the results went; the exit status."""
    results = run_evaluation(cfg)
    if "output" not in results:
        return 0  # not rank 0
    models = results["models"]
    what = models[0]["model"] if len(models) == 1 else f"an ensemble of {len(models)} models"
    print(f"{what}, {results['split']} split: {results['images']:,} images, crops: {results['crops']}")
    print(text_table(results["table"]))
    if "images_per_sec" in results:
        print(f"{results['images_per_sec']:.1f} images/s ({results['forward_passes_per_sec']:.1f} forward passes/s) "
              f"on {results['device']}, {results['precision']}")
    if results.get("unreadable"):
        names = ", ".join(shown(name) for name in results["unreadable"][:10])
        print(f"skipped {len(results['unreadable'])} unreadable image(s): {names}")
    for key in ("output", "markdown", "plot", "per_class_csv"):
        if key in results:
            print(f"{key}: {results[key]}")
    for path in results.get("probs_files", []):
        print(f"probabilities: {path}")
    return 0
