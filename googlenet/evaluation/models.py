"""What `ckpt=` names: one checkpoint, a list, or a glob; train.py checkpoints or bare (torchvision) weights."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from torch import nn

from common.errors import UserError
from data.classes import class_names, imagenet_classes
from data.multicrop import Geometry

from ..checkpoint import all_finite, read_weights
from ..models.convert import load_torchvision_weights
from ..models.layers import AUX_PREFIXES
from ..models.registry import INPUT_SIZE, build_from_config, build_model

TORCHVISION_PRESETS = ("inception_v1_torchvision", "inception_v3_torchvision")


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    classes: list[str]
    names: list[str]
    data_cfg: dict          # the data settings the weights were trained with (root, crop size, ...)
    weights: str            # "raw", "ema" or "torchvision"
    path: Path | None = None

    def geometry(self, cfg) -> Geometry:
        """Crop size and resize: the command line's data.crop_size / data.eval_resize, else the training's."""
        size = cfg.data.get("crop_size") or self.data_cfg["crop_size"]
        resize = cfg.data.get("eval_resize") or self.data_cfg.get("eval_resize") or round(size / 0.875)
        if resize < size:
            raise UserError(f"data.crop_size={size} is larger than the resize before cropping ({resize}); raise "
                            f"data.eval_resize to {size} or more, or lower data.crop_size")
        return Geometry(int(size), int(resize))


def expand_paths(spec, key: str) -> list[Path]:
    """A path, a list of paths, or glob patterns (`runs/multirun/*/*/checkpoints/best.pt`), in sorted order."""
    items = list(spec) if OmegaConf.is_list(spec) or isinstance(spec, list | tuple) else [spec]
    paths: list[Path] = []
    for item in items:
        text = os.path.expanduser(str(item))
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise UserError(f"{key}={item} matches no file; check the pattern (and quote it in the shell)")
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(text))
    if not paths:
        raise UserError(f"{key}= names no file; pass a path, a list [a, b] or a glob")
    seen: dict[str, Path] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise UserError(f"{key}= names {seen[real]} twice (as {path}): an ensemble counts each model once; "
                            "drop the duplicate")
        seen[real] = path
    return paths


def load_for_eval(cfg, path: Path) -> LoadedModel:
    """The model in `path`: a train.py checkpoint, or bare weights (torchvision's) for a *_torchvision preset.
    What the file holds decides, not its name."""
    weights = read_weights(path, "ckpt", cfg.weights, what="checkpoint")
    if not all_finite(weights.state):
        raise UserError(f"{path} holds non-finite {weights.kind} weights (NaN or inf): its predictions would mean "
                        "nothing; pick another checkpoint (or weights=raw / weights=ema)")
    requested = cfg.model.name if cfg.get("model") else None
    checkpoint = weights.checkpoint
    if checkpoint is None:
        return _load_torchvision(requested, path, weights.state)
    saved = checkpoint["config"]
    name = saved["model"]["name"]
    if requested is not None and requested != name:
        raise UserError(f"checkpoint {path} holds model {name}, not {requested}; drop model= or pass the right ckpt")
    model = build_from_config(saved["model"])
    try:
        model.load_state_dict(weights.state)
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not fit model {name}: {str(e).splitlines()[0]}") from None
    classes = list(checkpoint["classes"])
    return LoadedModel(model, name, classes, list(checkpoint.get("class_names") or classes), saved["data"],
                       weights.kind, path)


def _load_torchvision(name: str | None, path: Path, state: dict) -> LoadedModel:
    if name not in TORCHVISION_PRESETS:
        raise UserError(f"{path} holds bare weights (torchvision's?); add model=inception_v1_torchvision "
                        "(googlenet) or model=inception_v3_torchvision (inception_v3)")
    model = build_model(name, aux_logits=any(k.startswith(AUX_PREFIXES) for k in state))
    load_torchvision_weights(model, state)
    wnids = [w for w, _ in imagenet_classes()]
    size = INPUT_SIZE[name]
    data_cfg = {"name": "imagenet", "root": os.environ.get("IMAGENET_ROOT"), "crop_size": size,
                "eval_resize": round(size / 0.875), "fast_decode": True}
    return LoadedModel(model, name, wnids, class_names(wnids), data_cfg, "torchvision", path)
