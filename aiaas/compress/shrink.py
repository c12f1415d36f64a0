"""Structured pruning: remove whole neurons (Linear rows) and channels (Conv filters),
so layers really get smaller and run faster.

Removing output unit j of a layer also removes what depends on it: the matching
entries of a BatchNorm in between and input column j (or, after a Flatten, the
block of columns channel j became) of the next layer. Dependencies are followed
inside ``nn.Sequential`` containers, through activations, dropout, pooling,
BatchNorm and Flatten; anything else ends a chain and its layers keep their width,
because a skip connection or reshape there could read the removed unit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aiaas.errors import InvalidArgument

_PASS_THROUGH = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Mish,
    nn.Hardswish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_LAYERS = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True, slots=True)
class LayerChange:
    name: str
    before: tuple[int, ...]
    after: tuple[int, ...]


def shrink(model: nn.Module, ratio: float) -> tuple[nn.Module, list[LayerChange]]:
    """A copy with ``ratio`` of each prunable layer's output units removed (lowest norm first).

    The last layer of each chain (the model's outputs) keeps its width.
    """
    if not 0.0 < ratio < 1.0:
        raise InvalidArgument(f"structured pruning ratio must be between 0 and 1, got {ratio}")
    shrunk = copy.deepcopy(model)
    before = {
        name: tuple(m.weight.shape) for name, m in shrunk.named_modules() if isinstance(m, _LAYERS)
    }
    for sequential in [m for m in shrunk.modules() if isinstance(m, nn.Sequential)]:
        _shrink_sequential(sequential, ratio)
    changes = [
        LayerChange(name, before[name], tuple(module.weight.shape))
        for name, module in shrunk.named_modules()
        if isinstance(module, _LAYERS) and tuple(module.weight.shape) != before[name]
    ]
    if not changes:
        raise InvalidArgument(
            "structured pruning found no chain of Linear/Conv2d layers inside an nn.Sequential "
            "to shrink (supported: Linear->Linear and Conv->[BatchNorm]->Conv/Linear chains)"
        )
    return shrunk, changes


def _shrink_sequential(sequential: nn.Sequential, ratio: float) -> None:
    layers = list(sequential)
    for index, producer in enumerate(layers):
        if not isinstance(producer, _LAYERS):
            continue
        found = _consumer(layers, index)
        if found is None:
            continue
        consumer_index, norms, flattened = found
        width = producer.weight.shape[0]
        keep_count = max(1, round(width * (1.0 - ratio)))
        if keep_count == width:
            continue
        keep = (
            _importance(producer, [layers[i] for i in norms]).topk(keep_count).indices.sort().values
        )
        layers[index] = _slice_out(producer, keep)
        for norm_index in norms:
            layers[norm_index] = _slice_norm(layers[norm_index], keep)
        layers[consumer_index] = _slice_in(layers[consumer_index], keep, width, flattened)
    for position, layer in enumerate(layers):
        sequential[position] = layer


def _consumer(layers: list[Any], index: int) -> tuple[int, list[int], bool] | None:
    """The next layer that reads this one's output units, the norms between, and whether
    a Flatten turned channels into blocks of features; None when the chain breaks."""
    producer, norms, flattened = layers[index], [], False
    for position in range(index + 1, len(layers)):
        layer = layers[position]
        if isinstance(layer, _NORMS) and layer.num_features == producer.weight.shape[0]:
            norms.append(position)
        elif isinstance(layer, nn.Flatten) and isinstance(producer, nn.Conv2d):
            flattened = True
        elif isinstance(layer, nn.Linear) and (isinstance(producer, nn.Linear) or flattened):
            fits = layer.in_features % producer.weight.shape[0] == 0
            return (position, norms, flattened) if fits else None
        elif isinstance(layer, nn.Conv2d) and isinstance(producer, nn.Conv2d) and not flattened:
            return (position, norms, flattened) if layer.groups == 1 else None
        elif not isinstance(layer, _PASS_THROUGH):
            return None
    return None


def _importance(producer: Any, norms: list[Any]) -> torch.Tensor:
    """L2 norm of each unit's weights, times the BatchNorm scale it then gets."""
    with torch.no_grad():
        score = producer.weight.flatten(1).norm(dim=1)
        for norm in norms:
            score = score * (norm.weight.abs() / torch.sqrt(norm.running_var + norm.eps))
    importance: torch.Tensor = score
    return importance


def _slice_out(layer: Any, keep: torch.Tensor) -> Any:
    if isinstance(layer, nn.Linear):
        new: Any = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    else:
        new = _conv_like(layer, layer.in_channels, len(keep))
    with torch.no_grad():
        new.weight.copy_(layer.weight[keep])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[keep])
    return new


def _slice_in(layer: Any, keep: torch.Tensor, width: int, flattened: bool) -> Any:
    if isinstance(layer, nn.Linear):
        columns = keep
        if flattened:
            block = layer.in_features // width
            columns = (keep[:, None] * block + torch.arange(block)).flatten()
        new: Any = nn.Linear(len(columns), layer.out_features, bias=layer.bias is not None)
    else:
        columns = keep
        new = _conv_like(layer, len(keep), layer.out_channels)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, columns])
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new


def _slice_norm(norm: Any, keep: torch.Tensor) -> Any:
    new: Any = type(norm)(len(keep), eps=norm.eps, momentum=norm.momentum, affine=norm.affine)
    with torch.no_grad():
        if norm.affine:
            new.weight.copy_(norm.weight[keep])
            new.bias.copy_(norm.bias[keep])
        if norm.track_running_stats:
            new.running_mean.copy_(norm.running_mean[keep])
            new.running_var.copy_(norm.running_var[keep])
            new.num_batches_tracked.copy_(norm.num_batches_tracked)
    return new


def _conv_like(conv: Any, in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
