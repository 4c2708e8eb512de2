"""Compose a config from overrides (for tests, benchmarks and tools) and validate every config group.

Each group's checks live next to the code that reads its keys; this module only lists them.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from common.errors import UserError
from data.loaders import check_data_config

from ..distributed import check_dist_config
from ..models.registry import check_model_config
from ..runtime import check_runtime_config
from ..training.ema import check_ema_config
from ..training.finetune import check_finetune_config
from ..training.loss import check_loss_config
from ..training.optim import check_optim_config
from ..training.schedule import check_schedule_config
from ..training.trainer import check_trainer_config
from .hydra_callbacks import agree_on_now

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def check_train_config(cfg) -> None:
    check_data_config(cfg)
    check_model_config(cfg)
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
    check_finetune_config(cfg)
    if cfg.dist.static_graph and cfg.optim.accumulate > 1:
        raise UserError("dist.static_graph=true cannot be combined with optim.accumulate>1 (DDP's static graph "
                        "asserts under no_sync, pytorch#143580); set one of them back")


def check_evaluate_config(cfg) -> None:
    from ..evaluation.run import check_evaluation_config
    check_evaluation_config(cfg)


def check_predict_config(cfg) -> None:
    from ..deploy.predict import check_predict_config as check
    check(cfg)


def check_export_config(cfg) -> None:
    from ..deploy.export import check_export_config as check
    check(cfg)


VALIDATORS = {"train": check_train_config, "evaluate": check_evaluate_config, "predict": check_predict_config,
              "export": check_export_config}


def first_line(e: Exception) -> str:
    """Hydra's and OmegaConf's composition errors as one line that names the key and the fix."""
    text = str(e).strip() or type(e).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = str(e.__cause__ or "")
    if "not in struct" in cause and lines[0].startswith("Could not override"):
        key = lines[0].split("'")[1]
        return f"{key} is not a config key (check the spelling; python train.py --cfg job lists every key)"
    if lines[0].startswith("Error parsing override"):
        item = lines[0].split("'", 1)[1].rsplit("'", 1)[0] if "'" in lines[0] else lines[0]
        return (f"cannot parse the override {item!r}; write key=value (quote values with spaces or special "
                "characters, e.g. 'data.root=\"/my data\"')")
    if lines[0].startswith("Ambiguous value for argument"):
        item = lines[0].split("'")[1]
        return f"{item} lists several values: that is a sweep; add -m (python train.py -m {item})"
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", lines[0])
    if missing:
        group, name = missing.groups()
        if group in ("hydra/launcher", "hydra/sweeper"):
            return (f"{group}={name} is not installed; pip install -r requirements-hydra.txt "
                    "(the submitit launcher and the optuna sweeper)")
        if (CONFIG_DIR / group).is_dir():
            options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
            return f"unknown {group} {name!r}; choose one of: {', '.join(options)}"
    return lines[0]


def _has_key(cfg, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return OmegaConf.is_dict(node) and leaf in node


_RUNTIME_MOVED = {f"trainer.{k}": f"runtime.{k}" for k in ("device", "precision", "channels_last", "compile",
                                                             "cudnn_benchmark")}
# Keys that were renamed so that a key means one thing in every command: the old spelling names the new one.
RENAMED = {
    "train": {"model.weights": "finetune.weights", "model.freeze": "finetune.freeze", **_RUNTIME_MOVED},
    "evaluate": {"ema": "weights (auto | raw | ema)", "trainer.limit_val_batches": "limit_batches",
                 "trainer.progress": "progress", **_RUNTIME_MOVED},
    "predict": {"ema": "weights (auto | raw | ema)", **_RUNTIME_MOVED},
    "export": {"ema": "weights (auto | raw | ema)", **_RUNTIME_MOVED},
}


def override_key(item: str) -> str:
    return item.lstrip("+~").split("=", 1)[0].split("@")[0]


def check_renamed_keys(config_name: str, overrides: list[str]) -> None:
    for item in overrides:
        key = override_key(item)
        new = RENAMED.get(config_name, {}).get(key)
        if new is not None:
            raise UserError(f"{key} was renamed: use {new} (python {config_name}.py --help lists every key)")


def check_added_keys(config_name: str, overrides: list[str]) -> None:
    """`+key=value` would add a key nothing reads (only config groups may be added that way), and `++key=value`
    may only set a key that exists: both are typos otherwise."""
    check_renamed_keys(config_name, overrides)
    forced = []
    for item in overrides:
        if item.startswith("+") and "=" in item:
            key = item.lstrip("+").split("=", 1)[0].split("@")[0]
            if item.startswith("++"):
                if not key.startswith("hydra."):
                    forced.append((item, key))
            elif "." in key or not (CONFIG_DIR / key).is_dir():
                raise UserError(f"{item}: adding new keys is not supported; {key} is not a config key "
                                "(python train.py --cfg job lists every key)")
    if forced:
        base = compose_raw(config_name, [o for o in overrides if not o.startswith("++")])
        for item, key in forced:
            if not _has_key(base, key):
                raise UserError(f"{item}: {key} is not a config key; ++ sets existing keys only "
                                "(python train.py --cfg job lists every key)")


def compose_raw(config_name: str, overrides: list[str]) -> DictConfig:
    """The composed config with its `hydra` node, unresolved (Hydra's compose API)."""
    setup_globals()
    agree_on_now()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(first_line(e)) from None
    finally:
        GlobalHydra.instance().clear()


@contextlib.contextmanager
def _as_hydra_config(cfg: DictConfig):
    """Make `cfg` the current Hydra config (for ${hydra:...}) for a moment, as a Hydra job would see it."""
    from hydra.core.hydra_config import HydraConfig
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous


def task_config(cfg: DictConfig, output_dir: str | None) -> DictConfig:
    """The resolved task config (without `hydra`), as the task function will see it in `output_dir`."""
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = output_dir
    task = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(task):
        del task["hydra"]
    OmegaConf.set_struct(task, True)
    with _as_hydra_config(cfg):
        try:
            OmegaConf.resolve(task)
        except OmegaConfBaseException as e:
            raise UserError(f"config cannot be resolved: {first_line(e)}") from None
    return task


def resolved_run_dir(cfg: DictConfig, key: str = "hydra.run.dir") -> str:
    with _as_hydra_config(cfg):
        try:
            return str(OmegaConf.select(cfg, key))
        except OmegaConfBaseException as e:
            raise UserError(f"{key} cannot be resolved: {first_line(e)}") from None


def compose_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose and validate a config from overrides, as `python <config_name>.py` would, without running
    Hydra: for tests, benchmarks and tools. A `train` config gets `run_dir` from hydra.run.dir."""
    overrides = list(overrides or [])
    check_added_keys(config_name, overrides)
    full = compose_raw(config_name, overrides)
    run_dir = resolved_run_dir(full)
    cfg = task_config(full, run_dir)
    if config_name == "train":
        with open_dict(cfg):
            cfg.run_dir = run_dir
    VALIDATORS[config_name](cfg)
    return cfg
