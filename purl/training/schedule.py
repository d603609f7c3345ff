"""The optimiser and the learning-rate schedule: Adam, and a linear warm-up
followed by a cosine down to a floor (the original work's schedule)."""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch


def warmup_cosine(total_steps: int, warmup_frac: float, final_frac: float) -> Callable[[int], float]:
    """lr multiplier: linear from 0 over the warm-up, then cosine down to final_frac."""
    warmup = max(1, int(round(total_steps * warmup_frac)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_optimizer(parameters: Iterable[torch.nn.Parameter], optim: dict) -> torch.optim.Optimizer:
    """Adam with the ``optim`` section's lr and weight_decay."""
    return torch.optim.Adam(parameters, lr=optim["lr"], weight_decay=optim["weight_decay"])


def build_scheduler(optimizer: torch.optim.Optimizer, lr_factor: Callable[[int], float],
                    global_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule at ``global_step``: a scheduler made there takes its first
    step() in the constructor, which sets lr = initial lr * lr_factor(global_step)."""
    if global_step == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor, last_epoch=global_step - 1)
