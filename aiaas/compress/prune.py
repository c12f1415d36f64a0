"""Global magnitude (unstructured) pruning: zero the smallest weights across all layers.

Zeros in a dense weight matrix cost exactly as much to multiply as any other value:
this shrinks a compressed file, not CPU latency. `shrink.py` removes whole neurons
and channels when latency is the goal.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from aiaas.errors import InvalidArgument

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(module, "weight") for module in model.modules() if isinstance(module, PRUNABLE)]


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy with the ``sparsity`` fraction of smallest-|w| weights masked to zero.

    The masks stay attached (torch's pruning reparametrisation), so a fine-tune keeps
    the zeros; call ``make_permanent`` afterwards.
    """
    if not 0.0 < sparsity < 1.0:
        raise InvalidArgument(f"sparsity must be between 0 and 1, got {sparsity}")
    pruned = copy.deepcopy(model)
    parameters = prunable_weights(pruned)
    if not parameters:
        raise InvalidArgument("the model has no Linear or Conv layer to prune")
    prune.global_unstructured(parameters, pruning_method=prune.L1Unstructured, amount=sparsity)
    return pruned


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the pruning masks into the weights so the model exports as plain tensors."""
    for module, name in prunable_weights(model):
        if prune.is_pruned(module) and hasattr(module, f"{name}_mask"):
            prune.remove(module, name)  # type: ignore[no-untyped-call]
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over all Linear/Conv weights."""
    total = zeros = 0
    with torch.no_grad():
        for module, name in prunable_weights(model):
            weight = getattr(module, name)
            total += weight.numel()
            zeros += int((weight == 0).sum())
    return zeros / total if total else 0.0
