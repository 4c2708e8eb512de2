"""Compose the Hydra configs, resolve the run directory and validate every value where it enters."""
from __future__ import annotations

import math
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .distributed import launch_time
from .errors import UserError
from .models.registry import PRESETS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = str(e.__cause__ or "")
    if "not in struct" in cause and lines[0].startswith("Could not override"):
        key = lines[0].split("'")[1]
        return f"{key} is not a config key (check the spelling; python train.py --cfg lists every key)"
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", lines[0])
    if missing and (CONFIG_DIR / missing.group(1)).is_dir():
        group, name = missing.groups()
        options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        return f"unknown {group} {name!r}; choose one of: {', '.join(options)}"
    return lines[0]


def _reject_new_keys(overrides: list[str]) -> None:
    """`+key=value` would silently add a key nothing reads; only config groups may be added that way."""
    for item in overrides:
        if item.startswith("+") and not item.startswith("++") and "=" in item:
            key = item.lstrip("+").split("=", 1)[0]
            if "." in key or not (CONFIG_DIR / key).is_dir():
                raise UserError(f"{item}: adding new keys is not supported; {key} is not a config key "
                                "(python train.py --cfg lists every key)")


def compose_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """The composed config with `run_dir` set from hydra.run.dir (when the config has one) and validated."""
    overrides = list(overrides or [])
    _reject_new_keys(overrides)
    setup_globals()
    started = launch_time()  # one timestamp for all ranks of a torchrun job, and across its restarts
    OmegaConf.register_new_resolver("now", lambda pattern: started.strftime(pattern), replace=True)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(_first_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
    run_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None)
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    with_hydra.pop("hydra", None)
    cfg = OmegaConf.create(with_hydra)
    if config_name == "train":
        cfg.run_dir = str(run_dir)
    OmegaConf.set_struct(cfg, True)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"config cannot be resolved: {_first_line(e)}") from None
    VALIDATORS[config_name](cfg)
    return cfg


# ---------------------------------------------------------------------------------------------- checks

def _get(cfg, key):
    return OmegaConf.select(cfg, key, throw_on_missing=False)


def _number(cfg, key, *, integer=False, low=None, high=None, low_open=False, optional=False):
    value = _get(cfg, key)
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise UserError(f"{key}={value!r} must be {kind}{' or null' if optional else ''}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{key}={value} must be {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise UserError(f"{key}={value} must be <= {high}")


def _choice(cfg, key, choices):
    value = _get(cfg, key)
    if value not in choices:
        raise UserError(f"{key}={value!r} is not one of: {', '.join(map(str, choices))}")


def _bool(cfg, key):
    if not isinstance(_get(cfg, key), bool):
        raise UserError(f"{key}={_get(cfg, key)!r} must be true or false")


def _pair(cfg, key, low, high):
    value = _get(cfg, key)
    if (value is None or len(value) != 2 or not all(isinstance(v, int | float) for v in value)
            or not low < value[0] <= value[1] <= high):
        raise UserError(f"{key}={value} must be [lo, hi] with {low} < lo <= hi <= {high}")


def validate_model(cfg):
    _choice(cfg, "model.name", list(PRESETS))
    _number(cfg, "model.num_classes", integer=True, low=1)
    _number(cfg, "model.input_size", integer=True, low=32)
    _number(cfg, "model.dropout", low=0, high=1)
    _bool(cfg, "model.aux_logits")
    _bool(cfg, "model.transform_input")


def validate_data(cfg):
    d = "data"
    _choice(cfg, f"{d}.name", ["imagenet", "sample", "synthetic"])
    _number(cfg, f"{d}.batch_size", integer=True, low=1)
    _number(cfg, f"{d}.num_classes", integer=True, low=1)
    _number(cfg, f"{d}.crop_size", integer=True, low=16)
    if cfg.data.name == "synthetic":
        _number(cfg, f"{d}.train_batches", integer=True, low=1)
        _number(cfg, f"{d}.val_batches", integer=True, low=1)
        return
    _number(cfg, f"{d}.workers", integer=True, low=0)
    _number(cfg, f"{d}.prefetch_factor", integer=True, low=1)
    _number(cfg, f"{d}.eval_resize", integer=True, low=16, optional=True)
    if cfg.data.eval_resize is not None and cfg.data.eval_resize < cfg.data.crop_size:
        raise UserError(f"data.eval_resize={cfg.data.eval_resize} is smaller than data.crop_size="
                        f"{cfg.data.crop_size}; the centre crop must fit inside the resized image")
    _pair(cfg, f"{d}.augment.scale", 0, 1)
    _pair(cfg, f"{d}.augment.ratio", 0, 100)
    for k in ("brightness", "contrast", "saturation", "lighting"):
        _number(cfg, f"{d}.augment.{k}", low=0)
    _number(cfg, f"{d}.augment.hue", low=0, high=0.5)
    for k in ("hflip", "random_interpolation"):
        _bool(cfg, f"{d}.augment.{k}")
    _bool(cfg, f"{d}.fast_decode")
    _choice(cfg, f"{d}.decode", ["cpu", "device"])


def validate_train(cfg):
    validate_model(cfg)
    validate_data(cfg)
    if cfg.model.num_classes != cfg.data.num_classes:
        raise UserError(f"model.num_classes={cfg.model.num_classes} differs from data.num_classes="
                        f"{cfg.data.num_classes}; leave model.num_classes at its default")
    _number(cfg, "seed", integer=True, low=0)
    o = "optim"
    _choice(cfg, f"{o}.name", ["sgd", "rmsprop"])
    _number(cfg, f"{o}.lr", low=0, low_open=True)
    _number(cfg, f"{o}.base_batch", integer=True, low=1)
    _choice(cfg, f"{o}.scale_lr", ["linear", "sqrt", "none"])
    _number(cfg, f"{o}.momentum", low=0, high=1)
    _number(cfg, f"{o}.weight_decay", low=0)
    _number(cfg, f"{o}.alpha", low=0, high=1)
    _number(cfg, f"{o}.eps", low=0, low_open=True)
    _number(cfg, f"{o}.clip_grad_norm", low=0, low_open=True, optional=True)
    _number(cfg, f"{o}.accumulate", integer=True, low=1)
    s = "schedule"
    _choice(cfg, f"{s}.name", ["cosine", "step", "multistep"])
    _choice(cfg, f"{s}.interval", ["step", "epoch"])
    _number(cfg, f"{s}.warmup_epochs", low=0)
    _number(cfg, f"{s}.warmup_start", low=0, high=1)
    _number(cfg, f"{s}.min_lr", low=0, high=1)
    _number(cfg, f"{s}.step_epochs", low=0, low_open=True)
    _number(cfg, f"{s}.gamma", low=0, low_open=True, high=1)
    t = "trainer"
    _number(cfg, f"{t}.epochs", integer=True, low=1)
    device = str(cfg.trainer.device)
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UserError(f"trainer.device={device!r} is not one of: auto, cpu, cuda, cuda:N")
    _choice(cfg, f"{t}.precision", ["32", "bf16", "fp16", 32])
    _choice(cfg, f"{t}.channels_last", ["auto", True, False])
    _choice(cfg, f"{t}.progress", ["auto", True, False])
    _choice(cfg, f"{t}.best_metric", ["top1", "top5", "loss"])
    for k in ("limit_train_batches", "limit_val_batches", "checkpoint_every_steps"):
        _number(cfg, f"{t}.{k}", integer=True, low=1, optional=True)
    _number(cfg, f"{t}.val_every", integer=True, low=1)
    _number(cfg, f"{t}.log_every", integer=True, low=1)
    _number(cfg, f"{t}.keep_last", integer=True, low=0)
    _number(cfg, "loss.aux_weight", low=0)
    _number(cfg, "loss.label_smoothing", low=0, high=0.999)
    _bool(cfg, "ema.enabled")
    _number(cfg, "ema.decay", low=0, high=0.999999999)
    _number(cfg, "ema.every", integer=True, low=1)
    _choice(cfg, "dist.backend", ["auto", "nccl", "gloo"])
    _number(cfg, "dist.timeout_minutes", low=0, low_open=True)
    resume = cfg.resume
    if resume is not None and resume != "auto" and not Path(str(resume)).expanduser().is_file():
        raise UserError(f"resume={resume} is not a file; pass resume=auto, resume=null or a checkpoint path")


def validate_evaluate(cfg):
    if not cfg.get("ckpt"):
        raise UserError("ckpt is required: python evaluate.py ckpt=runs/.../checkpoints/best.pt")
    if cfg.get("model") is not None:
        _choice(cfg, "model.name", list(PRESETS))
    _choice(cfg, "crops", [1, 10, 144])
    _choice(cfg, "ema", ["auto", True, False])
    _choice(cfg, "precision", ["auto", "32", "bf16", "fp16", 32])
    _number(cfg, "batch_size", integer=True, low=1)
    _number(cfg, "crop_batch", integer=True, low=1)
    _number(cfg, "workers", integer=True, low=0)
    _number(cfg, "limit_batches", integer=True, low=1, optional=True)
    _number(cfg, "data.crop_size", integer=True, low=16, optional=True)
    _number(cfg, "data.eval_resize", integer=True, low=16, optional=True)
    _bool(cfg, "per_class")


VALIDATORS = {"train": validate_train, "evaluate": validate_evaluate}
