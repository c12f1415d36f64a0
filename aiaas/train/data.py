"""Datasets, and the order in which each worker sees them.

The sampler is what makes a run independent of its worker count: step `s` always
trains on the same global batch (positions `[s*B, (s+1)*B)` of the epoch's seeded
permutation) and workers split it exactly as `DistributedSampler` would
(`permutation[rank::world_size]`). Because the position is a pure function of the
step, resuming needs only the step number, not an iterator's hidden state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from aiaas.train.spec import resolve_path, resolve_reference

_FINGERPRINT_ITEMS = 100_000


def load_dataset(source: str, kwargs: dict[str, Any], base: Path) -> Dataset[Any]:
    """A Dataset from `module:factory(**kwargs)` or from an .npz holding arrays x and y."""
    if source.endswith(".npz"):
        with np.load(resolve_path(source, base)) as arrays:
            inputs, targets = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        # Models train in float32 and classification losses want int64 labels.
        inputs = inputs.float() if inputs.is_floating_point() else inputs
        targets = targets.float() if targets.is_floating_point() else targets.long()
        return TensorDataset(inputs, targets)
    dataset: Dataset[Any] = resolve_reference(source, "data.dataset")(**kwargs)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"{source} returned {type(dataset).__name__}, not a map-style Dataset")
    return dataset


def fetch(dataset: Dataset[Any], indices: Sequence[int]) -> Any:
    """One batch; tensor datasets are sliced at once instead of item by item."""
    if isinstance(dataset, TensorDataset):
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(tensor[index] for tensor in dataset.tensors)
    return default_collate([dataset[i] for i in indices])


@dataclass(frozen=True, kw_only=True)
class GlobalBatchSampler:
    """This rank's micro-batches for every step from `start_step` to `total_steps`."""

    dataset_size: int
    global_batch_size: int
    world_size: int
    rank: int
    grad_accumulation: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_size // self.global_batch_size

    @property
    def micro_batch_size(self) -> int:
        return self.global_batch_size // (self.world_size * self.grad_accumulation)

    def permutation(self, epoch: int) -> list[int]:
        """The same permutation `DistributedSampler(shuffle=True, seed=seed)` draws for `epoch`."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def step_indices(self, step: int, permutation: list[int]) -> list[list[int]]:
        """The micro-batches (one per accumulation round) this rank trains on at `step`."""
        within = step % self.steps_per_epoch
        global_batch = permutation[within * self.global_batch_size :][: self.global_batch_size]
        mine = global_batch[self.rank :: self.world_size]
        size = self.micro_batch_size
        return [mine[k * size : (k + 1) * size] for k in range(self.grad_accumulation)]

    def iterate(self, start_step: int, total_steps: int) -> Iterator[tuple[int, list[list[int]]]]:
        epoch, permutation = -1, []
        for step in range(start_step, total_steps):
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                permutation = self.permutation(epoch)
            yield step, self.step_indices(step, permutation)


def eval_shard(dataset_size: int, rank: int, world_size: int) -> range:
    """Each evaluation sample on exactly one rank: no padding, so sums over ranks are exact."""
    return range(rank, dataset_size, world_size)


def fingerprint(dataset: Dataset[Any], source: str, base: Path) -> str:
    """A content hash for lineage: which data made this model, independent of how it was named."""
    digest = hashlib.sha256()
    if source.endswith(".npz"):
        digest.update(resolve_path(source, base).read_bytes())
        return "sha256:" + digest.hexdigest()
    if isinstance(dataset, TensorDataset):
        for tensor in dataset.tensors:
            _update(digest, tensor)
        return "sha256:" + digest.hexdigest()
    size = len(dataset)  # type: ignore[arg-type]
    stride = max(1, size // _FINGERPRINT_ITEMS)  # Beyond 100k items, hash an even sample.
    digest.update(f"{size}:{stride}".encode())
    for index in range(0, size, stride):
        for part in _leaves(dataset[index]):
            _update(digest, part)
    return "sha256:" + digest.hexdigest()


def _leaves(item: Any) -> list[Any]:
    if isinstance(item, tuple | list):
        return [leaf for part in item for leaf in _leaves(part)]
    if isinstance(item, dict):
        return [leaf for key in sorted(item) for leaf in _leaves(item[key])]
    return [item]


def _update(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    else:
        digest.update(repr(value).encode())
