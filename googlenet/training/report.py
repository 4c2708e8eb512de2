"""What the training loop tells the user: the start summary, interval scalars, the epoch line, skipped files and
the final hyperparameters. Each function takes the run's `RunLog` (rank 0 only) and the values it reports.
"""
from __future__ import annotations

import torch
from omegaconf import OmegaConf

from common.files import shown

from ..models.summary import summarize
from .runlog import RunLog


def describe(log: RunLog, cfg, *, model, data, runtime, world_size: int, global_batch: int, peak_lr: float,
             warmup_epochs: float, steps_per_epoch: int, run_dir) -> None:
    """What the run is about to do: config, model table, data, processes, batch and learning rate."""
    log.info(OmegaConf.to_yaml(cfg).rstrip())
    if log.enabled:
        log.info(str(summarize(model, cfg.data.crop_size, cfg.model.name)))
    log.info(f"data: {cfg.data.name}, {data.train_size:,} train / {data.val_size:,} val images, "
             f"{len(data.classes)} classes; loader {data.loader}")
    precision = runtime.precision + (f" ({runtime.reason})" if runtime.reason else "")
    log.info(f"processes: {world_size}, device: {runtime.device}, precision: {precision}; "
             f"global batch {global_batch} = {cfg.data.batch_size} x {world_size} process(es) x "
             f"{cfg.optim.accumulate} accumulation; lr {peak_lr:.4g} ({cfg.optim.lr:g} at "
             f"{cfg.optim.base_batch}, {cfg.optim.scale_lr} scaling"
             + (f", after {warmup_epochs:g} warmup epochs" if warmup_epochs else "")
             + f"); {steps_per_epoch} steps per epoch"
             + ("; dist.sync_bn: SyncBatchNorm, which waits for the host in every batch-norm layer (slower)"
                if cfg.dist.sync_bn and world_size > 1 else ""))
    log.info(f"run dir: {run_dir}")


def log_interval(log: RunLog, values: dict[str, float], step: int, lr: float, num_aux: int, device: torch.device,
                 images_per_sec: float, wait: float, bar) -> None:
    """The training scalars of one log interval (values: the summed meters of all ranks)."""
    n = max(values["images"], 1)
    loss = values["loss"] / n
    scalars = {"train/loss": loss, "train/loss_main": values["loss_main"] / n, "train/lr": lr,
               "train/top1": 100 * values["top1"] / n, "train/top5": 100 * values["top5"] / n,
               "perf/images_per_sec": images_per_sec, "perf/data_wait_fraction": wait}
    for i in range(1, num_aux + 1):
        scalars[f"train/loss_aux{i}"] = values[f"loss_aux{i}"] / n
    if device.type == "cuda":
        scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    log.scalars(scalars, step)
    bar.set_postfix_str(f"loss {loss:.3f} lr {lr:.3g} {images_per_sec:.0f} img/s")


def log_image_grid(log: RunLog, images: torch.Tensor, step: int) -> None:
    if log.enabled:
        from torchvision.utils import make_grid
        grid = make_grid(images[:32].float().cpu() / 255, nrow=8)
        log.images("train/augmented_batch", grid, step)


def log_validation(log: RunLog, results: dict[str, dict[str, float]], step: int) -> None:
    for prefix, values in results.items():
        log.scalars({f"{prefix}/{k}": v for k, v in values.items() if k != "images"}, step)


def log_epoch(log: RunLog, metrics: dict[str, float], epoch: int, epochs: int, step: int,
              replaced: list[str]) -> None:
    """The end of epoch `epoch` (counted from 1): its time, the unreadable files replaced, and the epoch line."""
    log.scalars({"time/epoch_seconds": metrics["epoch_time"]}, step)
    report_skipped(log, sorted(set(replaced)), "replaced", epoch, step)
    log.info(epoch_line(metrics, epoch, epochs))
    log.flush()


def epoch_line(metrics: dict[str, float], epoch: int, epochs: int) -> str:
    line = [f"epoch {epoch}/{epochs}", f"train loss {metrics['train_loss']:.4f}",
            f"top1 {metrics['train_top1']:.2f}%"]
    if "val_top1" in metrics:
        line.append(f"val top1 {metrics['val_top1']:.2f}% top5 {metrics['val_top5']:.2f}%")
        if "val_ema_top1" in metrics:
            line.append(f"ema top1 {metrics['val_ema_top1']:.2f}%")
    line.append(f"{metrics['epoch_time']:.1f}s")
    return " | ".join(line)


def report_skipped(log: RunLog, skipped: list[str], what: str, epoch: int, step: int) -> None:
    if skipped:
        names = ", ".join(shown(name) for name in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        log.info(f"epoch {epoch}: {what} {len(skipped)} unreadable image(s): {names}")
        log.scalars({"data/skipped_images": len(skipped)}, step)


def write_hparams(log: RunLog, cfg, metrics: dict[str, float], step: int, *, peak_lr: float, global_batch: int,
                  precision: str) -> None:
    hparams = {"model": cfg.model.name, "data": cfg.data.name, "optim": cfg.optim.name, "lr": peak_lr,
               "global_batch": global_batch, "epochs": cfg.trainer.epochs,
               "aux_weight": cfg.loss.aux_weight, "label_smoothing": cfg.loss.label_smoothing,
               "ema": cfg.ema.enabled, "precision": precision}
    final = {f"hparam/{k}": v for k, v in metrics.items() if k.startswith("val") and not k.endswith("images")}
    if final:
        log.hparams(hparams, final, step)
