"""Structured pruning really removes rows and keeps connected layers consistent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aiaas.compress import examples
from aiaas.compress.shrink import shrink
from aiaas.errors import InvalidArgument


def test_mlp_hidden_layers_lose_half_their_rows_and_the_next_layer_its_columns(digits_mlp):
    pruned, changes = shrink(digits_mlp, 0.5)
    shapes = [tuple(m.weight.shape) for m in pruned if isinstance(m, nn.Linear)]
    assert shapes == [(64, 64), (32, 64), (10, 32)]
    assert {c.name: c.after for c in changes} == {"0": (64, 64), "2": (32, 64), "4": (10, 32)}
    assert pruned(torch.rand(5, 64)).shape == (5, 10)
    assert next(tuple(m.weight.shape) for m in digits_mlp if isinstance(m, nn.Linear)) == (128, 64)


def test_kept_units_compute_exactly_what_they_did_before(digits_mlp):
    pruned, _ = shrink(digits_mlp, 0.5)
    pixels = torch.rand(3, 64)
    original_hidden = digits_mlp[1](digits_mlp[0](pixels))
    pruned_hidden = pruned[1](pruned[0](pixels))
    # Every kept neuron is one of the original neurons, unchanged.
    for column in pruned_hidden.T:
        assert torch.isclose(original_hidden.T, column, atol=1e-6).all(dim=1).any()


def test_conv_batchnorm_conv_flatten_linear_chain_shrinks_consistently():
    model = examples.digits_cnn((16, 32)).eval()
    pruned, _ = shrink(model, 0.5)
    convs = [m for m in pruned if isinstance(m, nn.Conv2d)]
    norms = [m for m in pruned if isinstance(m, nn.BatchNorm2d)]
    head = next(m for m in pruned if isinstance(m, nn.Linear))
    assert [tuple(c.weight.shape) for c in convs] == [(8, 1, 3, 3), (16, 8, 3, 3)]
    assert [n.num_features for n in norms] == [8, 16]
    assert tuple(head.weight.shape) == (10, 16 * 4)
    assert pruned.eval()(torch.rand(2, 64)).shape == (2, 10)


def test_a_model_without_a_sequential_chain_is_refused():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.linear(x)

    with pytest.raises(InvalidArgument, match="no chain"):
        shrink(Residual(), 0.5)
