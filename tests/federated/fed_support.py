"""SPECs, tiny models and helpers shared by the federated tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

DIGITS_SPEC = """\
name = "digits"

[model]
factory = "aiaas.train.examples:digits_mlp"
kwargs = { hidden = 32 }

[data]
dataset = "aiaas.train.examples:digits_dataset"
kwargs = { split = "train" }
eval_dataset = "aiaas.train.examples:digits_dataset"
eval_kwargs = { split = "test" }

[training]
epochs = 1
global_batch_size = 16
seed = 3

[optimizer]
name = "sgd"
lr = 0.1

[federated]
rounds = 3
strategy = "fedavg"
min_available_clients = 2
min_fit_clients = 2
"""


def write_spec(tmp_path: Path, text: str = DIGITS_SPEC, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class Scalar(nn.Module):
    """One weight, initialised to zero, broadcast to every sample: updates are exact."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.weight.expand(len(inputs))


def scalar() -> nn.Module:
    return Scalar()


def linear_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d/dw of -(w * mean(y)) is -mean(y): one SGD step at lr 1 moves w by mean(y)."""
    return -(outputs * targets.float()).mean()


def constant_dataset(value: float = 0.0, size: int = 4) -> TensorDataset:
    return TensorDataset(torch.zeros(size, 1), torch.full((size,), value))


SCALAR_SPEC = """\
name = "scalar"

[model]
factory = "fed_support:scalar"

[data]
dataset = "fed_support:constant_dataset"

[training]
epochs = 1
global_batch_size = 64
loss = "fed_support:linear_loss"
seed = 0

[optimizer]
name = "sgd"
lr = 1.0

[federated]
rounds = 1
min_available_clients = 2
min_fit_clients = 2
"""


def final_state(run_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(run_dir / "final" / "model.pt", weights_only=False)
    return state


def max_difference(first: dict[str, Any], second: dict[str, Any]) -> float:
    assert first.keys() == second.keys()
    return max(float((first[key] - second[key]).abs().max()) for key in first)
