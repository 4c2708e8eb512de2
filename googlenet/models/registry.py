"""Named model presets: `model=<name>` in the configs, `build_model(name, ...)` in code."""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from torch import nn

from ..errors import UserError
from .inception_v1 import GoogLeNet, GoogLeNetConfig
from .inception_v3 import FactorizedInception, FactorizedInceptionConfig

PRESETS: dict[str, tuple[type[nn.Module], Any]] = {
    # the paper's topology with batch norm: the practical default for training from scratch
    "inception_v1": (GoogLeNet, GoogLeNetConfig()),
    # the paper's network exactly: LRN, conv biases, no batch norm
    "inception_v1_paper": (GoogLeNet, GoogLeNetConfig(batch_norm=False)),
    # layer for layer torchvision.models.googlenet
    "inception_v1_torchvision": (GoogLeNet, GoogLeNetConfig(
        branch5x5_kernel=3, pool_before_5a=2, dropout=0.2, aux_pool="adaptive", transform_input=True)),
    # the factorized network of "Rethinking the Inception Architecture", Table 1
    "inception_v2": (FactorizedInception, FactorizedInceptionConfig()),
    # inception_v2 with the BN-auxiliary head; the rest of the v3 recipe lives in experiment=inception_v3_paper
    "inception_v3": (FactorizedInception, FactorizedInceptionConfig(aux_batch_norm=True)),
    # layer for layer torchvision.models.inception_v3
    "inception_v3_torchvision": (FactorizedInception, FactorizedInceptionConfig(
        flavour="torchvision", branch5x5_kernel=5, aux_batch_norm=True, dropout=0.5, transform_input=True)),
}
# Input resolution each preset was designed for (evaluation resize is derived from it).
INPUT_SIZE = {name: 224 if cls is GoogLeNet else 299 for name, (cls, _) in PRESETS.items()}


def preset_config(name: str, **overrides):
    """The dataclass config of a preset with `overrides` applied; unknown names and keys are UserErrors."""
    if name not in PRESETS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(PRESETS)}")
    cls, cfg = PRESETS[name]
    known = {f.name for f in fields(cfg)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"model {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return replace(cfg, **overrides)


def build_model(name: str, **overrides) -> nn.Module:
    """Build a preset, e.g. `build_model("inception_v1", num_classes=10, aux_logits=False)`."""
    cfg = preset_config(name, **overrides)
    try:
        return PRESETS[name][0](cfg)
    except ValueError as e:
        raise UserError(f"model {name!r}: {e}") from None
