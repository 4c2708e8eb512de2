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
def validate(model: nn.Module, loader, normalizer: nn.Module, runtime: Runtime, env: D.DistEnv,
             limit: int | None = None, bar=None, on_batch: Callable[[], bool] | None = None):
    """(metrics over all ranks' shards, the unreadable files skipped on this rank, whether this rank saw its
    whole shard: `on_batch` returning False cuts it short). Unreadable images are skipped, not replaced."""
    model.eval()
    normalizer.eval()
    meters = DeviceMeters(VAL_METERS, runtime.device)
    skipped: list[str] = []
    complete = True
    loader.set_epoch(0)
    for i, (images, targets, unreadable) in enumerate(loader):
        if limit and i >= limit:
            break
        skipped.extend(unreadable)
        if images is None:  # nothing readable in this batch
            continue
        images = images.to(runtime.device, non_blocking=True)
        targets = targets.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            logits = model(normalizer(images))
        top1, top5 = topk_correct(logits, targets)
        meters.add(loss=F.cross_entropy(logits.float(), targets, reduction="sum"), top1=top1, top5=top5,
                   images=len(targets))
        if bar is not None:
            bar.update(1)
        if on_batch is not None and not on_batch():
            complete = False
            break
    totals = meters.read(env)
    count = max(totals["images"], 1)
    metrics = {"loss": totals["loss"] / count, "top1": 100 * totals["top1"] / count,
               "top5": 100 * totals["top5"] / count, "images": totals["images"]}
    return metrics, skipped, complete


def validate_models(models: dict[str, nn.Module], loader, normalizer: nn.Module, runtime: Runtime, env: D.DistEnv,
                    log, limit: int | None = None, on_batch: Callable[[], bool] | None = None):
    """`validate` each of {"val": model, "val_ema": ema_model}, with a progress bar per model. Returns
    (results per model, the unreadable files skipped). A validation that `on_batch` cut short on any rank
    raises TrainingInterrupted on every rank: its numbers would describe part of the split.

    Every rank takes the same collectives in the same order whatever the timing of a stop: each model's
    meters, then one agreement on whether all ranks saw their whole shard, before the next model starts."""
    results, skipped = {}, []
    for prefix, model in models.items():
        bar = log.bar(min(len(loader), limit or len(loader)), "validate")
        results[prefix], unreadable, complete = validate(model, loader, normalizer, runtime, env, limit, bar,
                                                         on_batch)
        bar.close()
        skipped += unreadable
        if not D.all_ranks(complete, env, runtime.device):
            raise TrainingInterrupted()
    return results, sorted(set(skipped))
