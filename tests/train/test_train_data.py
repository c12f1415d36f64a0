"""Sampling: DistributedSampler's split, and a global batch that ignores the worker count."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from aiaas.train.data import GlobalBatchSampler, eval_shard, fetch, fingerprint


def sampler(world: int, rank: int, accumulation: int = 1, size: int = 103) -> GlobalBatchSampler:
    return GlobalBatchSampler(
        dataset_size=size, global_batch_size=16, world_size=world, rank=rank,
        grad_accumulation=accumulation, seed=3,
    )  # fmt: skip


@pytest.mark.parametrize("world", [1, 2, 4])
def test_each_rank_sees_what_distributed_sampler_gives_it(world: int):
    dataset = TensorDataset(torch.arange(103))
    for rank in range(world):
        reference = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=3, drop_last=True
        )
        reference.set_epoch(1)
        ours = sampler(world, rank)
        per_rank = 16 // world
        expected = list(reference)[: ours.steps_per_epoch * per_rank]
        steps = ours.iterate(ours.steps_per_epoch, 2 * ours.steps_per_epoch)  # epoch 1
        assert [i for _, batches in steps for batch in batches for i in batch] == expected


@pytest.mark.parametrize(("world", "accumulation"), [(2, 1), (4, 1), (2, 2), (1, 4)])
def test_global_batch_of_a_step_does_not_depend_on_workers_or_accumulation(
    world: int, accumulation: int
):
    single = dict(sampler(1, 0).iterate(0, 14))
    split = [dict(sampler(world, rank, accumulation).iterate(0, 14)) for rank in range(world)]
    for step in range(14):
        micro_batches = [batch for rank in split for batch in rank[step]]
        assert len(micro_batches) == world * accumulation
        assert {len(batch) for batch in micro_batches} == {16 // (world * accumulation)}
        assert sorted(i for batch in micro_batches for i in batch) == sorted(single[step][0])


def test_resuming_mid_epoch_continues_the_same_sequence():
    whole = list(sampler(2, 1).iterate(0, 20))
    assert list(sampler(2, 1).iterate(9, 20)) == whole[9:]


def test_evaluation_shards_cover_every_sample_exactly_once():
    shards = [list(eval_shard(11, rank, 4)) for rank in range(4)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))


def test_fetch_slices_tensor_datasets_and_collates_others():
    dataset = TensorDataset(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    inputs, targets = fetch(dataset, [3, 1])
    assert inputs.tolist() == [[3.0], [1.0]]
    assert targets.tolist() == [3, 1]
    pairs = [(torch.tensor([float(i)]), i) for i in range(5)]
    inputs, targets = fetch(pairs, [4, 0])  # type: ignore[arg-type]
    assert inputs.tolist() == [[4.0], [0.0]]
    assert targets.tolist() == [4, 0]


def test_fingerprint_changes_with_content_not_with_identity(tmp_path):
    a = TensorDataset(torch.arange(6), torch.zeros(6))
    same = TensorDataset(torch.arange(6), torch.zeros(6))
    other = TensorDataset(torch.arange(6), torch.ones(6))
    assert fingerprint(a, "m:f", tmp_path) == fingerprint(same, "m:g", tmp_path)
    assert fingerprint(a, "m:f", tmp_path) != fingerprint(other, "m:f", tmp_path)
