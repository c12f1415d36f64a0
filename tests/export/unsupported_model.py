"""A model whose one operator has no ONNX translation (a custom op), for the error message."""

from __future__ import annotations

import torch


@torch.library.custom_op("aiaas_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Odd(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mystery(x)


class WithCustomOp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)
        self.odd = Odd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.linear(x))


def with_custom_op() -> torch.nn.Module:
    return WithCustomOp()


class Drifting(torch.nn.Module):
    """Python state baked into the trace: eager output changes per call, the export's does not."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


def drifting() -> torch.nn.Module:
    return Drifting()
