"""The optimizer every trainer here uses, the bundled model's builder included."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class OptimizerSettings(Protocol):
    learning_rate: float
    weight_decay: float
    adam_beta1: float
    adam_beta2: float


def make_optimizer(
    module: nn.Module, config: OptimizerSettings, *, eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (biases, norms and position scales are exempt, as
    is usual). ``eps``: Adam's denominator term (training runs set it as ``adam_epsilon``)."""
    decayed = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    exempt = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decayed, "weight_decay": config.weight_decay},
            {"params": exempt, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=eps,
    )
