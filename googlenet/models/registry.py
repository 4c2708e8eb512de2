"""Named model presets: the files in `configs/model/` (`model=<name>`), and `build_model(name, ...)` in code.

A preset file is the one definition of a preset: its family, input size and the constructor options of
the family's config dataclass. This module reads those files, so the command line and code build the same
network. `num_classes` in a file follows the dataset (`${data.num_classes}`); in code it defaults to 1000.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from common.errors import UserError

from .inception_v1 import GoogLeNet, GoogLeNetConfig
from .inception_v3 import FactorizedInception, FactorizedInceptionConfig

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"
FAMILIES: dict[str, tuple[type[nn.Module], type]] = {
    "googlenet": (GoogLeNet, GoogLeNetConfig),
    "factorized": (FactorizedInception, FactorizedInceptionConfig),
}
# Keys of the model group that are not constructor options: a preset's name, family and input size.
PRESET_KEYS = ("name", "family", "input_size")


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    input_size: int          # the resolution the network was designed for (evaluation resize derives from it)
    options: dict[str, Any]  # constructor options, as in the file (num_classes excluded)

    @property
    def module(self) -> type[nn.Module]:
        return FAMILIES[self.family][0]

    @property
    def config_class(self) -> type:
        return FAMILIES[self.family][1]


def _read_preset(path: Path) -> Preset:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    options = {k: v for k, v in raw.items() if k not in PRESET_KEYS and k != "num_classes"}
    return Preset(raw["name"], raw["family"], raw["input_size"], options)


PRESETS: dict[str, Preset] = {p.name: p for p in map(_read_preset, sorted(PRESET_DIR.glob("*.yaml")))}
INPUT_SIZE = {name: p.input_size for name, p in PRESETS.items()}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_config(name: str, **overrides):
    """The family's config dataclass for a preset with `overrides`; bad names, keys and values are UserErrors."""
    preset = get_preset(name)
    known = {f.name for f in fields(preset.config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"model {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    try:
        return preset.config_class(**{**preset.options, **overrides})
    except ValueError as e:
        raise UserError(f"model.{e} (model {name})") from None


def build_model(name: str, **overrides) -> nn.Module:
    """Build a preset, e.g. `build_model("inception_v1", num_classes=10, aux_logits=False)`."""
    return get_preset(name).module(preset_config(name, **overrides))


def model_options(model_cfg) -> dict[str, Any]:
    """Constructor options from a `model` config group (a DictConfig or a plain dict)."""
    options = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    return {k: v for k, v in options.items() if k not in PRESET_KEYS}


def build_from_config(model_cfg) -> nn.Module:
    return build_model(model_cfg["name"], **model_options(model_cfg))


def check_model_config(cfg) -> None:
    """The `model` group's keys (cfg is the whole config): a known preset, and options its family accepts."""
    name = OmegaConf.select(cfg, "model.name")
    preset = get_preset(name)
    if OmegaConf.select(cfg, "model.family") != preset.family:
        raise UserError(f"model.family={OmegaConf.select(cfg, 'model.family')!r} does not match preset {name} "
                        f"({preset.family}); leave model.family as the preset sets it")
    size = OmegaConf.select(cfg, "model.input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 32:
        raise UserError(f"model.input_size={size!r} must be an integer >= 32")
    options = model_options(cfg.model)
    if options.get("num_classes") is None:  # data=folder: the class count comes from the dataset
        options.pop("num_classes", None)
    preset_config(name, **options)
    crop = OmegaConf.select(cfg, "data.crop_size")
    if isinstance(crop, int) and not isinstance(crop, bool):
        check_input_size(name, options, crop)


@functools.lru_cache(maxsize=1)
def _shape_probe(name: str, options: tuple) -> nn.Module:
    """The network with uninitialised weights, for shape checks: built on the meta device (no initialisation),
    then given CPU memory. Not on meta for the forward pass: meta kernels of cat and batch norm go through
    Python decompositions that import torch._dynamo, seconds at every start of a command."""
    with torch.device("meta"):
        model = build_model(name, **dict(options))
    model = model.to_empty(device="cpu").eval()
    model.training = True  # the auxiliary heads run; batch norm and dropout take their inference paths
    return model


@functools.lru_cache(maxsize=64)
def _runs_at(name: str, options: tuple, size: int) -> bool:
    """Whether the network (with its auxiliary heads) takes a size x size input."""
    try:
        with torch.no_grad():
            _shape_probe(name, options)(torch.zeros(1, 3, size, size))
        return True
    except RuntimeError:
        return False


def check_input_size(name: str, options: dict, size: int, key: str = "data.crop_size") -> None:
    """A UserError naming the smallest input the network takes, when `size` is too small for it."""
    frozen = tuple(sorted((k, v) for k, v in options.items() if k != "num_classes"))
    try:
        _search_smallest(name, frozen, size, key)
    finally:
        _shape_probe.cache_clear()  # the probe holds the network's memory: not for the rest of the run


def _search_smallest(name: str, frozen: tuple, size: int, key: str) -> None:
    """Nothing when `size` runs; else a UserError with the smallest size that does (doubling, then bisection)."""
    if _runs_at(name, frozen, size):
        return
    low, high = size + 1, max(2 * size, 32)
    while not _runs_at(name, frozen, high):  # a size it takes, by doubling
        low, high = high + 1, 2 * high
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if _runs_at(name, frozen, mid) else (mid + 1, high)
    raise UserError(f"{key}={size} is too small for {name}: its pooling stages need at least {low} px; "
                    f"use {key}={low} or more")
