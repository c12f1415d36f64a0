"""Partitioning: every sample exactly once, seeded, and the skew each scheme promises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.federated.partition import (
    check_partition_file,
    label_histogram,
    parse_scheme,
    partition_indices,
    write_partitions,
)
from aiaas.train.config import ConfigError

LABELS = np.repeat(np.arange(10), 30)


@given(
    clients=st.integers(1, 20),
    scheme=st.sampled_from(["iid", "dirichlet:0.3", "dirichlet:5", "shards:1", "shards:3"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_every_sample_goes_to_exactly_one_client(clients, scheme, seed):
    parts = partition_indices(LABELS, clients, parse_scheme(scheme), seed)
    assert len(parts) == clients
    assert all(len(part) for part in parts)
    merged = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(merged, np.arange(len(LABELS)))


def test_the_same_seed_gives_the_same_partitions_and_another_seed_others():
    scheme = parse_scheme("dirichlet:0.5")
    first = partition_indices(LABELS, 5, scheme, 7)
    again = partition_indices(LABELS, 5, scheme, 7)
    other = partition_indices(LABELS, 5, scheme, 8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_shards_give_each_client_at_most_k_plus_one_labels_and_iid_gives_all():
    shards = partition_indices(LABELS, 10, parse_scheme("shards:2"), 0)
    _, counts = label_histogram(LABELS, shards)
    assert ((counts > 0).sum(axis=1) <= 3).all()  # a shard can straddle two labels
    iid = partition_indices(LABELS, 10, parse_scheme("iid"), 0)
    _, counts = label_histogram(LABELS, iid)
    assert (counts > 0).sum(axis=1).mean() > 8


def test_small_alpha_skews_labels_more_than_large_alpha():
    def skew(alpha: str) -> float:
        parts = partition_indices(LABELS, 10, parse_scheme(f"dirichlet:{alpha}"), 0)
        _, counts = label_histogram(LABELS, parts)
        shares = counts / counts.sum(axis=1, keepdims=True)
        return float(shares.max(axis=1).mean())

    assert skew("0.1") > skew("100") + 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dirichlet:0", "dirichlet ALPHA must be > 0, got 0"),
        ("dirichlet:-1", "dirichlet ALPHA must be > 0, got -1"),
        ("shards:0", "shards K must be a positive integer, got 0"),
        ("noniid", "'noniid' is not iid, dirichlet:ALPHA or shards:K"),
    ],
)
def test_bad_schemes_are_refused_with_the_reason(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_scheme(text)


def test_more_shards_than_samples_is_refused():
    with pytest.raises(ConfigError, match="= 400 shards but only 300 samples"):
        partition_indices(LABELS, 100, parse_scheme("shards:4"), 0)


def test_partition_files_round_trip_and_a_file_without_y_is_refused(tmp_path):
    inputs = np.arange(len(LABELS) * 2, dtype=np.float32).reshape(-1, 2)
    parts = partition_indices(LABELS, 3, parse_scheme("iid"), 0)
    paths = write_partitions(inputs, LABELS, parts, tmp_path / "parts")
    assert [check_partition_file(path) for path in paths] == [len(part) for part in parts]
    with np.load(paths[1]) as arrays:
        np.testing.assert_array_equal(arrays["y"], LABELS[parts[1]])
    np.savez(tmp_path / "bad.npz", x=inputs)
    with pytest.raises(ConfigError, match="lacks array\\(s\\) y"):
        check_partition_file(tmp_path / "bad.npz")
