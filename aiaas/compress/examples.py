"""Digits models and data for tests, docs and the benchmark (no download: scikit-learn ships
the 8x8 digit images). The CLI names the factories, e.g. `aiaas.compress.examples:digits_mlp`.

The MLP is a Linear chain (structured pruning through Sequential), the CNN a
Conv->BN->Conv chain (structured pruning of channels across a BatchNorm).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10


def digits_mlp(hidden: Sequence[int] = (128, 64)) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = DIGITS_FEATURES
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, DIGITS_CLASSES))
    return nn.Sequential(*layers)


def digits_mlp_half() -> nn.Sequential:
    """The default MLP at half width: the distillation student of the docs and benchmark."""
    return digits_mlp((64, 32))


def digits_cnn(channels: Sequence[int] = (16, 32)) -> nn.Sequential:
    """Takes the 64 pixels flat (like the MLP) so the same .npz files feed both."""
    first, second = channels
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, first, 3, padding=1),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.Conv2d(first, second, 3, padding=1),
        nn.BatchNorm2d(second),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(second * 4, DIGITS_CLASSES),
    )


def digits_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Digits scaled to [0, 1], split 60/20/20 into train, calibration-free eval and test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    features = (bunch.data / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut_train, cut_eval = int(0.6 * len(order)), int(0.8 * len(order))
    parts = {
        "train": order[:cut_train],
        "eval": order[cut_train:cut_eval],
        "test": order[cut_eval:],
    }
    arrays: dict[str, np.ndarray] = {}
    for split, rows in parts.items():
        arrays[f"{split}_x"], arrays[f"{split}_y"] = features[rows], labels[rows]
    return arrays


def write_digits_npz(directory: Path, seed: int = 0) -> dict[str, Path]:
    """train.npz, eval.npz and test.npz with inputs under `x` and labels under `y`."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = digits_arrays(seed)
    paths: dict[str, Path] = {}
    for split in ("train", "eval", "test"):
        paths[split] = directory / f"{split}.npz"
        np.savez(paths[split], x=arrays[f"{split}_x"], y=arrays[f"{split}_y"])
    return paths


def train_classifier(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    epochs: int = 30,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Plain Adam + cross-entropy; digits models reach ~97% in a few seconds."""
    torch.manual_seed(seed)
    features, targets = torch.from_numpy(inputs), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(targets)).split(64):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(features[rows]), targets[rows])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, inputs: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model.eval()(torch.from_numpy(inputs)).argmax(dim=1).numpy()
    return float((predicted == labels).mean())
