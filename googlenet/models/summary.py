"""Model summary: parameters, multiply-adds and the output shape of every stage."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import AUX_PREFIXES
from .registry import INPUT_SIZE, build_model


def count_parameters(model: nn.Module, include_aux: bool = True) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if include_aux or not n.startswith(AUX_PREFIXES))


@dataclass
class ModelSummary:
    name: str
    input_size: int
    params: int
    params_with_aux: int
    mult_adds: int                      # one image, inference (no aux heads)
    stages: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.name} @ {self.input_size}x{self.input_size}",
                 f"{'stage':<16}{'output (C x H x W)':>22}"]
        lines += [f"{n:<16}{' x '.join(map(str, s)):>22}" for n, s in self.stages]
        lines += [f"parameters: {self.params:,} (with aux heads: {self.params_with_aux:,})",
                  f"multiply-adds: {self.mult_adds / 1e9:.3f} G per image"]
        return "\n".join(lines)


def summarize(model: nn.Module, input_size: int, name: str = "") -> ModelSummary:
    """Shapes and multiply-adds of one eval-mode forward of a single image."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: shapes.append((n, tuple(out.shape[1:]))))
             for n, m in model.stages()]
    was_training = model.training
    model.eval()
    try:
        from torch.utils.flop_counter import FlopCounterMode  # imports triton: only when counting
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return ModelSummary(name or type(model).__name__, input_size, count_parameters(model, False),
                        count_parameters(model, True), counter.get_total_flops() // 2, shapes)


def summarize_preset(name: str, input_size: int | None = None, **overrides) -> ModelSummary:
    model = build_model(name, **overrides)
    return summarize(model, input_size or INPUT_SIZE[name], name)
