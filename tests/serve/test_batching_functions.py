"""Merge and split: the pure halves of the batcher."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.errors import InternalError
from aiaas.serve.batching import batch_key, effective_timeout_us, merge, split
from aiaas.serve.serving_config import QueuePolicy


@given(st.lists(st.integers(1, 5), min_size=1, max_size=8))
def test_split_returns_each_request_its_own_rows(rows):
    requests = [{"x": np.full((n, 3), i, dtype=np.float32)} for i, n in enumerate(rows)]
    merged = merge(requests)
    assert merged["x"].shape == (sum(rows), 3)
    pieces = split({"y": merged["x"] * 2}, rows)
    for i, (piece, n) in enumerate(zip(pieces, rows, strict=True)):
        np.testing.assert_array_equal(piece["y"], np.full((n, 3), 2 * i, dtype=np.float32))


def test_key_separates_shapes_and_dtypes_but_not_batch_size():
    a = batch_key({"x": np.zeros((1, 4), np.float32)}, batched=True)
    b = batch_key({"x": np.zeros((7, 4), np.float32)}, batched=True)
    c = batch_key({"x": np.zeros((1, 5), np.float32)}, batched=True)
    d = batch_key({"x": np.zeros((1, 4), np.float64)}, batched=True)
    assert a == b
    assert len({a, c, d}) == 3


def test_split_refuses_outputs_that_are_not_batched():
    with pytest.raises(InternalError, match="not a batch"):
        split({"y": np.zeros((3,))}, [1, 1])


@pytest.mark.parametrize(
    ("default_us", "override", "requested_us", "expected_us"),
    [
        (0, False, 0, 0),  # no timeout anywhere
        (0, False, 500, 0),  # a request's timeout needs allow_timeout_override
        (0, True, 500, 0),  # and even then cannot set one where the policy has none
        (1000, False, 0, 1000),
        (1000, False, 500, 1000),  # not allowed to override: the default holds
        (1000, True, 0, 1000),
        (1000, True, 500, 500),  # allowed: a shorter timeout wins
        (1000, True, 5000, 1000),  # but never a longer one
    ],
)
def test_a_requests_timeout_follows_tritons_queue_policy_rule(
    default_us, override, requested_us, expected_us
):
    policy = QueuePolicy(
        max_queue_size=10,
        default_timeout_us=default_us,
        allow_timeout_override=override,
        delay_on_timeout=False,
    )
    assert effective_timeout_us(policy, requested_us) == expected_us
