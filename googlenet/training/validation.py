"""Validation during training: loss, top-1 and top-5 on the single centre crops of the validation split."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed as D
from ..runtime import Runtime
from .loss import topk_correct
from .meters import DeviceMeters
from .stopping import TrainingInterrupted

VAL_METERS = ("loss", "top1", "top5", "images")


@torch.no_grad()
def validate_models(models: dict[str, nn.Module], loader, normalizer: nn.Module, runtime: Runtime, env: D.DistEnv,
                    log, limit: int | None = None, on_batch: Callable[[], bool] | None = None):
    """Loss, top-1 and top-5 of each of {"val": model, "val_ema": ema_model} over all ranks' shards, in one
    pass over the loader (each batch decoded once for all models). Returns (results per model, the unreadable
    files this rank skipped). `on_batch` returning False cuts the pass short; a pass cut short on any rank
    raises TrainingInterrupted on every rank: its numbers would describe part of the split.

    Every rank takes the same collectives in the same order whatever the timing of a stop: the meters of each
    model, then one agreement on whether all ranks saw their whole shard."""
    for model in models.values():
        model.eval()
    normalizer.eval()
    meters = {prefix: DeviceMeters(VAL_METERS, runtime.device) for prefix in models}
    skipped: list[str] = []
    complete = True
    bar = log.bar(min(len(loader), limit or len(loader)), "validate")
    loader.set_epoch(0)
    for i, (images, targets, unreadable) in enumerate(loader):
        if limit and i >= limit:
            break
        skipped.extend(unreadable)
        if images is None:  # nothing readable in this batch
            continue
        images = images.to(runtime.device, non_blocking=True)
        targets = targets.to(runtime.device, non_blocking=True)
        x = normalizer(images)
        for prefix, model in models.items():
            with runtime.autocast():
                logits = model(x)
            top1, top5 = topk_correct(logits, targets)
            meters[prefix].add(loss=F.cross_entropy(logits.float(), targets, reduction="sum"), top1=top1,
                               top5=top5, images=len(targets))
        bar.update(1)
        if on_batch is not None and not on_batch():
            complete = False
            break
    bar.close()
    results = {}
    for prefix, meter in meters.items():
        totals = meter.read(env)
        count = max(totals["images"], 1)
        results[prefix] = {"loss": totals["loss"] / count, "top1": 100 * totals["top1"] / count,
                           "top5": 100 * totals["top5"] / count, "images": totals["images"]}
    if not D.all_ranks(complete, env, runtime.device):
        raise TrainingInterrupted()
    return results, sorted(set(skipped))
