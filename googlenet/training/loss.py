"""The training loss: CE(main) + aux_weight * sum(CE(aux_i)), with each term reported."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.checks import check_number

from ..models.layers import InceptionOutputs


def check_loss_config(cfg) -> None:
    check_number(cfg, "loss.aux_weight", low=0)
    check_number(cfg, "loss.label_smoothing", low=0, high=0.999)


class InceptionLoss(nn.Module):
    def __init__(self, aux_weight: float = 0.3, label_smoothing: float = 0.0):
        super().__init__()
        self.aux_weight = aux_weight
        self.label_smoothing = label_smoothing

    def forward(self, outputs, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (total loss, {"main": ..., "aux1": ..., ...}); the terms are detached."""
        logits, aux = (outputs.logits, outputs.aux) if isinstance(outputs, InceptionOutputs) else (outputs, ())
        main = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        total = main
        terms = {"main": main.detach()}
        for i, aux_logits in enumerate(aux, start=1):
            term = F.cross_entropy(aux_logits.float(), targets, label_smoothing=self.label_smoothing)
            total = total + self.aux_weight * term
            terms[f"aux{i}"] = term.detach()
        return total, terms


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k predictions, for each k (stays on the device)."""
    k_max = min(max(ks), logits.shape[1])
    top = logits.float().topk(k_max, dim=1).indices  # ranked in fp32: bf16 logits tie more often
    hits = top.eq(targets.view(-1, 1))
    return [hits[:, :min(k, k_max)].any(dim=1).sum() for k in ks]
