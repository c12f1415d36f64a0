"""The running batch's KV cache: padded per-sequence rows with an attention mask.

Per layer, one key and one value array [rows, kv_heads, length, head_dim], rows
right-aligned (left padding) so every sequence's newest token sits in the last column
and one decode step appends one column for all. The model's ``present.*`` outputs are
kept as ONNX Runtime values and fed back as the next step's past untouched: no copy
into numpy and none out of it. Only a join (new rows, left-padded to the common
length) or a leave (a row dropped, then the left columns that became all padding
trimmed) copies the arrays, once, through zero-copy numpy views of those values.

Padding holds zeros and is masked out, so it never changes a row's attention; it costs
memory, which ``kv_cache_usage_perc`` counts (rows x length over the configured capacity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxruntime import OrtValue


def as_value(array: np.ndarray) -> OrtValue:
    """An ONNX Runtime value over ``array``'s memory (which it keeps alive)."""
    return OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


class BatchCache:
    """Past keys/values and the attention mask of the running rows, in model order."""

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int) -> None:
        self.num_layers = num_layers
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        #: key, value, key, value... (layer 0 first), as the model's outputs come.
        self.past: list[OrtValue] = []
        self.mask = np.zeros((0, 0), dtype=np.int64)
        self.reset(0)

    def reset(self, rows: int) -> None:
        """``rows`` empty rows: the past of a prefill."""
        empty = np.zeros((rows, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        self.past = [as_value(empty) for _ in range(2 * self.num_layers)]
        self.mask = np.zeros((rows, 0), dtype=np.int64)

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.kv_heads * self.head_dim * 4

    def arrays(self) -> list[np.ndarray]:
        """Zero-copy numpy views of the past (valid while this cache holds it)."""
        return [value.numpy() for value in self.past]

    def past_feed(self) -> dict[str, OrtValue]:
        feed: dict[str, OrtValue] = {}
        for layer in range(self.num_layers):
            feed[f"past_key_values.{layer}.key"] = self.past[2 * layer]
            feed[f"past_key_values.{layer}.value"] = self.past[2 * layer + 1]
        return feed

    def extended_mask(self, new_tokens: int) -> np.ndarray:
        """The mask over past + ``new_tokens`` real positions, for the next run."""
        ones = np.ones((self.rows, new_tokens), dtype=np.int64)
        return np.concatenate([self.mask, ones], axis=1)

    def update(self, presents: Sequence[OrtValue], mask: np.ndarray) -> None:
        """Take a run's outputs (key, value per layer, in order) as the new past."""
        self.past = list(presents)
        self.mask = mask

    def join(self, other: BatchCache) -> None:
        """Append ``other``'s rows below ours, left-padding whichever is shorter."""
        if self.rows == 0:
            self.past, self.mask = other.past, other.mask
            return
        length = max(self.length, other.length)
        rows = self.rows + other.rows
        shape = (rows, self.kv_heads, length, self.head_dim)
        self.past = [
            as_value(_stack(top, bottom, shape))
            for top, bottom in zip(self.arrays(), other.arrays(), strict=True)
        ]
        mask = np.zeros((rows, length), dtype=np.int64)
        mask[: self.rows, length - self.length :] = self.mask
        mask[self.rows :, length - other.length :] = other.mask
        self.mask = mask

    def remove(self, drop: Sequence[int]) -> None:
        """Drop rows, then trim the left columns no remaining row uses."""
        if not drop:
            return
        keep = np.setdiff1d(np.arange(self.rows), np.asarray(drop, dtype=np.int64))
        mask = self.mask[keep]
        used = np.flatnonzero(mask.any(axis=0))
        start = int(used[0]) if used.size else self.length
        self.mask = np.ascontiguousarray(mask[:, start:])
        self.past = [as_value(array[keep, :, start:]) for array in self.arrays()]


def _stack(top: np.ndarray, bottom: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    length = shape[2]
    out[: top.shape[0], :, length - top.shape[2] :] = top
    out[top.shape[0] :, :, length - bottom.shape[2] :] = bottom
    return out
