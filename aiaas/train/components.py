"""Model, loss, optimizer and schedule, built from their config sections.

Losses must be means over the batch: every worker's micro-batch has the same
size, so the mean of micro-batch means (divided by the accumulation rounds) is
exactly the mean over the global batch, on any number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aiaas.train.config import ModelConfig, OptimizerConfig
from aiaas.train.spec import resolve_reference

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build_model(config: ModelConfig) -> nn.Module:
    model = resolve_reference(config.factory, "model.factory")(**config.kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"{config.factory} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy that also takes sequence outputs (batch, length, classes)."""
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]).float(), targets.reshape(-1))


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs.float().reshape(targets.shape), targets.float())


def build_loss(name: str) -> LossFn:
    builtin: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mse": mse}
    if name in builtin:
        return builtin[name]
    loss: LossFn = resolve_reference(name, "training.loss")
    return loss


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    # foreach=False: the per-parameter path is the same code for plain and DTensor
    # parameters, which keeps DDP and FSDP numerically alike.
    parameters = list(model.parameters())
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            foreach=False,
        )
    optimizer_class = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
    beta1, beta2 = config.betas
    return optimizer_class(
        parameters,
        lr=config.lr,
        betas=(beta1, beta2),
        weight_decay=config.weight_decay,
        foreach=False,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimizerConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup, then constant, linear-to-zero or cosine-to-zero over `total_steps`."""
    warmup = min(config.warmup_steps, total_steps)
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / decay_steps)
        if config.schedule == "linear":
            return 1.0 - progress
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
