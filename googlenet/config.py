"""Compose a config from overrides (for tests, benchmarks and tools) and validate every config group.

Each group's checks live next to the code that reads its keys; this module only lists them.
"""
from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.loaders import check_data_config

from .distributed import check_dist_config, launch_time
from .ema import check_ema_config
from .errors import UserError
from .loss import check_loss_config
from .models.registry import check_model_config
from .optim import check_optim_config
from .runtime import check_runtime_config
from .schedule import check_schedule_config
from .trainer import check_trainer_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def check_train_config(cfg) -> None:
    check_model_config(cfg)
    check_data_config(cfg)
    if cfg.model.num_classes != cfg.data.num_classes:
        raise UserError(f"model.num_classes={cfg.model.num_classes} differs from data.num_classes="
                        f"{cfg.data.num_classes}; leave model.num_classes at its default")
    check_optim_config(cfg)
    check_schedule_config(cfg)
    check_runtime_config(cfg)
    check_trainer_config(cfg)
    check_loss_config(cfg)
    check_ema_config(cfg)
    check_dist_config(cfg)


def check_evaluate_config(cfg) -> None:
    from .evaluation import check_evaluation_config
    check_evaluation_config(cfg)


VALIDATORS = {"train": check_train_config, "evaluate": check_evaluate_config}


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = str(e.__cause__ or "")
    if "not in struct" in cause and lines[0].startswith("Could not override"):
        key = lines[0].split("'")[1]
        return f"{key} is not a config key (check the spelling; python train.py --cfg job lists every key)"
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
                                "(python train.py --cfg job lists every key)")


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
