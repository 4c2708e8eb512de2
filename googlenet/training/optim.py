"""Optimizers (SGD, RMSProp in PyTorch's or TensorFlow's form), parameter groups and lr scaling."""
from __future__ import annotations

import math

import torch
from torch import nn

from common.checks import check_bool, check_choice, check_number
from common.errors import UserError

OPTIMIZERS = ("sgd", "rmsprop")


def check_optim_config(cfg) -> None:
    """The `optim` group's keys (cfg is the whole config)."""
    o = "optim"
    check_choice(cfg, f"{o}.name", OPTIMIZERS)
    check_number(cfg, f"{o}.lr", low=0, low_open=True, high=1e6)
    check_number(cfg, f"{o}.base_batch", integer=True, low=1)
    check_choice(cfg, f"{o}.scale_lr", ["linear", "sqrt", "none"])
    check_number(cfg, f"{o}.momentum", low=0, high=1)
    check_number(cfg, f"{o}.weight_decay", low=0)
    check_bool(cfg, f"{o}.no_decay_norm_bias")
    check_number(cfg, f"{o}.clip_grad_norm", low=0, low_open=True, optional=True)
    check_number(cfg, f"{o}.accumulate", integer=True, low=1)
    if cfg.optim.name == "sgd":
        check_bool(cfg, f"{o}.nesterov")
    else:
        check_number(cfg, f"{o}.alpha", low=0, high=1)
        check_number(cfg, f"{o}.eps", low=0, low_open=True)
        check_bool(cfg, f"{o}.tf_style")


def scaled_lr(optim_cfg, global_batch: int) -> float:
    """optim.lr is the lr at optim.base_batch images per optimizer step; scale it to the actual batch."""
    ratio = global_batch / optim_cfg.base_batch
    rule = optim_cfg.scale_lr
    return optim_cfg.lr * (ratio if rule == "linear" else math.sqrt(ratio) if rule == "sqrt" else 1.0)


def parameter_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool,
                     backbone_lr_mult: float = 1.0) -> list[dict]:
    """Trainable parameters by weight decay (none on biases and norm parameters when `no_decay_norm_bias`) and,
    when `backbone_lr_mult` != 1, by part: everything but the classifier heads gets lr x backbone_lr_mult
    (the `lr_mult` of its group)."""
    from .finetune import is_head
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = 0.0 if no_decay_norm_bias and p.ndim <= 1 else weight_decay  # 1-d: biases, norm scales/shifts
        mult = 1.0 if backbone_lr_mult == 1 or is_head(name) else float(backbone_lr_mult)
        groups.setdefault((mult, decay), []).append(p)
    order = sorted(groups, key=lambda key: (-key[0], -key[1]))
    return [{"params": groups[key], "weight_decay": key[1], "lr_mult": key[0]} for key in order]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow computes it, which the Inception-v3 recipe (eps 1.0) was tuned for.

    ms <- alpha * ms + (1 - alpha) * g^2   (ms starts at 1, not 0)
    mom <- momentum * mom + lr * g / sqrt(ms + eps)   (eps inside the square root)
    p <- p - mom
    Weight decay is added to the gradient (L2), as in TF-slim's regularisers.
    """

    def __init__(self, params, lr: float, alpha: float = 0.9, eps: float = 1.0, momentum: float = 0.9,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            for p in params:
                if not self.state[p]:
                    self.state[p]["square_avg"] = torch.ones_like(p)
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            square = [self.state[p]["square_avg"] for p in params]
            momentum = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_mul_(square, group["alpha"])
            torch._foreach_addcmul_(square, grads, grads, value=1 - group["alpha"])
            denom = torch._foreach_sqrt(torch._foreach_add(square, group["eps"]))
            torch._foreach_mul_(momentum, group["momentum"])
            torch._foreach_addcdiv_(momentum, grads, denom, value=group["lr"])
            torch._foreach_sub_(params, momentum)
        return loss


def build_optimizer(model: nn.Module, optim_cfg, lr: float, device_type: str = "cpu") -> torch.optim.Optimizer:
    groups = parameter_groups(model, optim_cfg.weight_decay, optim_cfg.no_decay_norm_bias,
                              optim_cfg.get("backbone_lr_mult", 1.0))
    fast = {"foreach": True} if device_type == "cuda" else {}
    if optim_cfg.name == "sgd":
        if device_type == "cuda":  # one fused kernel for the whole update
            return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov,
                                   fused=True)
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.momentum, nesterov=optim_cfg.nesterov)
    if optim_cfg.name == "rmsprop":
        if optim_cfg.tf_style:
            return RMSpropTF(groups, lr=lr, alpha=optim_cfg.alpha, eps=optim_cfg.eps, momentum=optim_cfg.momentum)
        return torch.optim.RMSprop(groups, lr=lr, alpha=optim_cfg.alpha, eps=optim_cfg.eps,
                                   momentum=optim_cfg.momentum, **fast)
    raise UserError(f"optim.name={optim_cfg.name!r} is not one of: sgd, rmsprop")
