"""One pass over a split: every model on every crop mode of every image, each image decoded once.

For each image, model and crop mode the softmax probabilities are averaged over the crops (the paper averages
probabilities, not logits), kept at float16 precision (what `save_probs` stores, so that recombining saved
probabilities reproduces a direct run exactly), then averaged over the first k models for every ensemble size
k asked for. Only counts leave the pass: top-1 and top-5 hits per (k, crop mode), per model alone, and per
class for the whole ensemble; under DDP they are summed over ranks, each rank having seen its own images.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from data.device_ops import BatchNormalizer
from data.multicrop import DECODED, Decoded, Geometry, cut_on_device

from .. import distributed as D
from ..runtime import Runtime


def ensemble_top5(stacked: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """stacked: (models, images, classes) probabilities. For each k in `sizes`, the top-5 classes of the average of
    the first k models (float32, summed in model order: a recombination from saved files gives the same)."""
    cumulative = stacked.float().cumsum(0)
    return [(cumulative[k - 1] / k).topk(min(5, stacked.shape[-1]), dim=1).indices for k in sizes]


def add_per_class(per_class: torch.Tensor, top: torch.Tensor, targets: torch.Tensor) -> None:
    """Add images, top-1 and top-5 hits per class (rows of `per_class`) for predictions `top` (images, 5)."""
    per_class[0].index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
    per_class[1].index_add_(0, targets, top[:, 0].eq(targets).double())
    per_class[2].index_add_(0, targets, top.eq(targets.view(-1, 1)).any(dim=1).double())


def ensemble_hits(stacked: torch.Tensor, targets: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(len(sizes), 2): top-1 and top-5 hits of the first-k-model averages."""
    out = torch.zeros(len(sizes), 2, dtype=torch.float64, device=stacked.device)
    for i, top in enumerate(ensemble_top5(stacked, sizes)):
        out[i, 0] = top[:, 0].eq(targets).sum()
        out[i, 1] = top.eq(targets.view(-1, 1)).any(dim=1).sum()
    return out


def crop_averaged_probs(model, views: torch.Tensor, normalizer, runtime: Runtime, crop_batch: int) -> torch.Tensor:
    """(images, crops, 3, S, S) uint8 views -> (images, classes) probabilities, averaged over crops, as float16."""
    b, n = views.shape[:2]
    flat = views.flatten(0, 1)
    chunks = []
    for j in range(0, b * n, crop_batch):
        x = normalizer(flat[j:j + crop_batch].to(runtime.device, non_blocking=True))
        with runtime.autocast():
            chunks.append(model(x).float().softmax(dim=1))
    return torch.cat(chunks).view(b, n, -1).mean(dim=1).half()


@dataclass
class PassResult:
    modes: tuple[int, ...]
    sizes: list[int]
    hits: torch.Tensor            # (len(sizes), len(modes), 2): top-1 / top-5 hits of the k-model ensembles
    single: torch.Tensor          # (models, len(modes), 2): each model alone
    per_class: torch.Tensor       # (3, classes): images, top-1, top-5 hits of the whole ensemble, headline mode
    images: int
    seconds: float
    unreadable: list[str] = field(default_factory=list)
    probs: dict = field(default_factory=dict)  # {(model index, mode): (sample indices, float16 probs)}


@torch.no_grad()
def run_pass(models: list, geometries: list[Geometry], loader, modes: tuple[int, ...], sizes: list[int],
             num_classes: int, runtime: Runtime, env: D.DistEnv, crop_batch: int, keep_probs: bool,
             limit: int | None = None, bars=None, on_batch: Callable[[int], None] | None = None) -> PassResult:
    """One pass over `loader` for every model and crop mode: the ensembles' hits, each model's, per class.
    `bars` (one per model) advance after each model's batch; `on_batch(images)` after each batch."""
    device = runtime.device
    normalizer = BatchNormalizer(channels_last=runtime.channels_last).to(device).eval()
    hits = torch.zeros(len(sizes), len(modes), 2, dtype=torch.float64, device=device)
    single = torch.zeros(len(models), len(modes), 2, dtype=torch.float64, device=device)
    per_class = torch.zeros(3, num_classes, dtype=torch.float64, device=device)
    kept: dict = {}
    unreadable: list[str] = []
    start = time.perf_counter()
    for i, (indices, views, targets, bad) in enumerate(loader):
        if limit and i >= limit:
            break
        unreadable += bad
        if views is None:
            continue
        targets = targets.to(device, non_blocking=True)
        if DECODED in views:  # each image uploaded once, its views cut there once for every model
            decoded = [Decoded(d.image.to(device, non_blocking=True), d.original) for d in views.pop(DECODED)]
            for g in dict.fromkeys(geometries):
                for mode in modes:
                    if (g, mode) not in views:
                        views[(g, mode)] = cut_on_device(decoded, g, mode)
        probs = {}
        for m, (model, g) in enumerate(zip(models, geometries)):
            for mode in modes:
                probs[(m, mode)] = crop_averaged_probs(model, views[(g, mode)], normalizer, runtime, crop_batch)
                if keep_probs:
                    kept.setdefault((m, mode), []).append((indices, probs[(m, mode)].cpu()))
            if bars:
                bars[m].update(1)
        for j, mode in enumerate(modes):
            stacked = torch.stack([probs[(m, mode)] for m in range(len(models))])
            hits[:, j] += ensemble_hits(stacked, targets, sizes)
            for m in range(len(models)):
                single[m, j] += ensemble_hits(stacked[m:m + 1], targets, [1])[0]
        top = ensemble_top5(torch.stack([probs[(m, modes[-1])] for m in range(len(models))]), [len(models)])[0]
        add_per_class(per_class, top, targets)
        if on_batch:
            on_batch(len(indices))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    for tensor in (hits, single, per_class):
        D.all_reduce_sum(tensor, env)
    result = PassResult(modes, sizes, hits.cpu(), single.cpu(), per_class.cpu(), int(per_class[0].sum().item()),
                        seconds, [p for ps in D.gather_objects(unreadable, env) for p in ps])
    if keep_probs:
        result.probs = _gather_probs(kept, env)
    return result


def _gather_probs(kept: dict, env: D.DistEnv) -> dict:
    """Every rank's rows on every rank, in sample order."""
    out = {}
    for key, parts in kept.items():
        indices = torch.cat([torch.as_tensor(i) for i, _ in parts])
        rows = torch.cat([p for _, p in parts])
        gathered = D.gather_objects((indices, rows), env)
        indices = torch.cat([i for i, _ in gathered])
        order = indices.argsort()
        out[key] = (indices[order], torch.cat([r for _, r in gathered])[order])
    return out
