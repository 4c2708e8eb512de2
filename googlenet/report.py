"""What the training loop tells the user: the start summary, interval scalars, the epoch line, skipped
files and the final hyperparameters. Everything goes through the run's `RunLog` (rank 0 only).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from omegaconf import OmegaConf

from .models.summary import summarize

if TYPE_CHECKING:
    from .trainer import Trainer


def describe(trainer: Trainer) -> None:
    """What the run is about to do: config, model table, data, processes, batch and learning rate."""
    cfg, log, env = trainer.cfg, trainer.log, trainer.env
    log.info(OmegaConf.to_yaml(cfg).rstrip())
    if env.is_main:
        log.info(str(summarize(trainer.model, cfg.data.crop_size, cfg.model.name)))
    log.info(f"data: {cfg.data.name}, {trainer.data.train_size:,} train / {trainer.data.val_size:,} val images, "
             f"{len(trainer.data.classes)} classes")
    precision = trainer.runtime.precision + (f" ({trainer.runtime.reason})" if trainer.runtime.reason else "")
    log.info(f"processes: {env.world_size}, device: {trainer.device}, precision: {precision}; "
             f"global batch {trainer.global_batch} = {cfg.data.batch_size} x {env.world_size} process(es) x "
             f"{cfg.optim.accumulate} accumulation; lr {trainer.peak_lr:.4g} ({cfg.optim.lr:g} at "
             f"{cfg.optim.base_batch}, {cfg.optim.scale_lr} scaling); {trainer.steps_per_epoch} steps per epoch")
    log.info(f"run dir: {trainer.run_dir}")
    if env.is_main:
        (trainer.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


def log_interval(trainer: Trainer, values: dict[str, float], images_per_sec: float, wait: float, bar) -> None:
    """The training scalars of one log interval (values: the summed meters of all ranks)."""
    n = max(values["images"], 1)
    loss = values["loss"] / n
    lr = trainer.optimizer.param_groups[0]["lr"]
    scalars = {"train/loss": loss, "train/loss_main": values["loss_main"] / n, "train/lr": lr,
               "train/top1": 100 * values["top1"] / n, "train/top5": 100 * values["top5"] / n,
               "perf/images_per_sec": images_per_sec, "perf/data_wait_fraction": wait}
    for i in range(1, trainer.num_aux + 1):
        scalars[f"train/loss_aux{i}"] = values[f"loss_aux{i}"] / n
    if trainer.device.type == "cuda":
        scalars["perf/gpu_memory_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    trainer.log.scalars(scalars, trainer.state.step)
    bar.set_postfix_str(f"loss {loss:.3f} lr {lr:.3g} {images_per_sec:.0f} img/s")


def log_image_grid(trainer: Trainer, images: torch.Tensor) -> None:
    if trainer.env.is_main:
        from torchvision.utils import make_grid
        grid = make_grid(images[:32].float().cpu() / 255, nrow=8)
        trainer.log.images("train/augmented_batch", grid, trainer.state.step)


def log_validation(trainer: Trainer, results: dict[str, dict[str, float]]) -> None:
    for prefix, values in results.items():
        trainer.log.scalars({f"{prefix}/{k}": v for k, v in values.items() if k != "images"}, trainer.state.step)


def log_epoch(trainer: Trainer, metrics: dict[str, float]) -> None:
    """The end of an epoch: its time, the unreadable files met, and the epoch line."""
    trainer.log.scalars({"time/epoch_seconds": metrics["epoch_time"]}, trainer.state.step)
    report_skipped(trainer, sorted(set(trainer.skipped)), "replaced")
    trainer.skipped = []
    trainer.log.info(epoch_line(trainer, metrics))
    trainer.log.flush()


def epoch_line(trainer: Trainer, metrics: dict[str, float]) -> str:
    s = trainer.state
    line = [f"epoch {s.epoch}/{trainer.cfg.trainer.epochs}", f"train loss {metrics['train_loss']:.4f}",
            f"top1 {metrics['train_top1']:.2f}%"]
    if "val_top1" in metrics:
        line.append(f"val top1 {metrics['val_top1']:.2f}% top5 {metrics['val_top5']:.2f}%")
        if "val_ema_top1" in metrics:
            line.append(f"ema top1 {metrics['val_ema_top1']:.2f}%")
    line.append(f"{metrics['epoch_time']:.1f}s")
    return " | ".join(line)


def report_skipped(trainer: Trainer, skipped: list[str], what: str) -> None:
    if skipped:
        shown = ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        trainer.log.info(f"epoch {trainer.state.epoch}: {what} {len(skipped)} unreadable image(s): {shown}")
        trainer.log.scalars({"data/skipped_images": len(skipped)}, trainer.state.step)


def write_hparams(trainer: Trainer) -> None:
    cfg = trainer.cfg
    hparams = {"model": cfg.model.name, "data": cfg.data.name, "optim": cfg.optim.name, "lr": trainer.peak_lr,
               "global_batch": trainer.global_batch, "epochs": cfg.trainer.epochs,
               "aux_weight": cfg.loss.aux_weight, "label_smoothing": cfg.loss.label_smoothing,
               "ema": cfg.ema.enabled, "precision": trainer.runtime.precision}
    final = {f"hparam/{k}": v for k, v in trainer.state.metrics.items()
             if k.startswith("val") and not k.endswith("images")}
    if final:
        trainer.log.hparams(hparams, final, trainer.state.step)
