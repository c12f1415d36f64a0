"""Reference models and datasets small enough for tests, docs and the benchmark.

Digits (scikit-learn's bundled 8x8 images) needs no download, trains to ~95%
accuracy in seconds on a CPU and makes a classifier worth serving. The tiny
causal transformer and its synthetic token task exercise the same loop on a
sequence model whose cost is dominated by matmuls, as real ones are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10


def digits_mlp(hidden: int = 64, depth: int = 1) -> nn.Module:
    """An MLP over the 64 pixel intensities; `depth` hidden layers of width `hidden`."""
    layers: list[nn.Module] = []
    width = DIGITS_FEATURES
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, DIGITS_CLASSES))
    return nn.Sequential(*layers)


def digits_dataset(split: str = "train", test_fraction: float = 0.2) -> Dataset[Any]:
    """Digits scaled to [0, 1]; a fixed interleaved split so train and test never overlap."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    bunch = load_digits()
    features = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    every = max(2, round(1 / test_fraction))
    is_test = torch.arange(len(labels)) % every == 0
    if split == "train":
        return TensorDataset(features[~is_test], labels[~is_test])
    if split == "test":
        return TensorDataset(features[is_test], labels[is_test])
    return TensorDataset(features, labels)


def wide_mlp(
    features: int = 512, hidden: int = 2048, depth: int = 4, classes: int = 10
) -> nn.Module:
    """A compute-bound MLP for the benchmark: most time in large matmuls, little in Python."""
    layers: list[nn.Module] = []
    width = features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def random_classification(
    samples: int = 4096, features: int = 512, classes: int = 10
) -> Dataset[Any]:
    """Gaussian inputs labelled by a fixed random linear map: learnable, deterministic, free."""
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(samples, features, generator=generator)
    projection = torch.randn(features, classes, generator=generator)
    return TensorDataset(inputs, (inputs @ projection).argmax(dim=1))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        output: torch.Tensor = x + self.mlp(self.norm2(x))
        return output


class TinyTransformer(nn.Module):
    """A GPT-style decoder; `fsdp_units` tells `apply_fsdp` to shard block by block."""

    def __init__(self, vocab: int, width: int, depth: int, heads: int, max_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(max_length, width) / math.sqrt(width))
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.blocks)


def tiny_transformer(
    vocab: int = 64, width: int = 128, depth: int = 2, heads: int = 4, max_length: int = 64
) -> nn.Module:
    return TinyTransformer(vocab, width, depth, heads, max_length)


def token_sequences(samples: int = 2048, length: int = 64, vocab: int = 64) -> Dataset[Any]:
    """Next-token prediction on sequences that count up modulo `vocab` from a random start."""
    generator = torch.Generator().manual_seed(4321)
    starts = torch.randint(0, vocab, (samples, 1), generator=generator)
    sequences = (starts + torch.arange(length + 1)) % vocab
    return TensorDataset(sequences[:, :-1], sequences[:, 1:])
