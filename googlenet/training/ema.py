"""Exponential moving average (Polyak averaging) of a model's weights and batch-norm statistics."""
from __future__ import annotations

import copy

import torch
from torch import nn

from common.checks import check_bool, check_number


def check_ema_config(cfg) -> None:
    check_bool(cfg, "ema.enabled")
    check_number(cfg, "ema.decay", low=0, high=0.999999999)
    check_number(cfg, "ema.every", integer=True, low=1)


class ModelEMA:
    """ema <- d * ema + (1 - d) * model, over parameters and floating-point buffers (BN running stats).

    The decay ramps up as in TensorFlow's ExponentialMovingAverage: d = min(decay, (1 + n) / (10 + n))
    after n updates, so early averages are not dominated by the random initialisation. Integer buffers
    (BN's num_batches_tracked) are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs: tuple[int, list, list, list, list] | None = None  # (id(model), ema/model floats, ints)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def _tensors(self, model: nn.Module) -> tuple[list, list, list, list]:
        """The averaged tensors and their sources, listed once (state_dict walks cost more than the update)."""
        if self._pairs is None or self._pairs[0] != id(model):
            ema_state, state = self.module.state_dict(), model.state_dict()
            floats = [k for k, v in ema_state.items() if v.is_floating_point()]
            ints = [k for k, v in ema_state.items() if not v.is_floating_point()]
            self._pairs = (id(model), [ema_state[k] for k in floats], [state[k].detach() for k in floats],
                           [ema_state[k] for k in ints], [state[k].detach() for k in ints])
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        ema_floats, floats, ema_ints, ints = self._tensors(model)
        torch._foreach_lerp_(ema_floats, floats, 1 - d)
        if ema_ints:
            torch._foreach_copy_(ema_ints, ints)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = state["updates"]
