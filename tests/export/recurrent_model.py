"""A recurrent classifier over a sequence of any length, for export with a dynamic time axis."""

from __future__ import annotations

import torch


class GruClassifier(torch.nn.Module):
    """x (batch, time, 8) -> a GRU over time -> scores (batch, 3) from the last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(x)
        return self.head(hidden[-1])


def gru_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return GruClassifier()


class FixedBatch(torch.nn.Module):
    """Works for a batch of exactly 2 only: torch.export must refuse a dynamic batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1).sum(dim=1) if x.shape[0] == 2 else x.sum(dim=-1).sum(dim=-1)
