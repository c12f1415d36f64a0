"""The offline optimisation falls back extended -> basic -> none when a level breaks parity.

Both models move a tiny scale across a product of huge numbers. PyTorch applies the
scale first, so the product stays finite; ONNX Runtime's fusions fold the scale
elsewhere, so the product overflows to inf in float32: MatMulScaleFusion (an
extended-level fusion) turns ``(x * s) @ w`` into one FusedMatMul that scales after
multiplying, and ConvMulFusion (a basic-level one) folds ``conv(x, w) * s`` into the
weights, which turns PyTorch's inf into a finite number. The inputs are positive, so
every overflow is +inf in PyTorch and in the unoptimised export alike.
"""

from __future__ import annotations

import onnx
import pytest
import torch

from aiaas.export import export_onnx


class ScaledMatMul(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.full((8, 4), 1e30))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 1e-30) @ self.weight


class ConvTimesScale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1e30)
        self.register_buffer("scale", torch.full((1, 2, 1), 1e-30))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


def positive_huge(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 1e9 + 1e10


def op_types(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_extended_level_that_breaks_parity_falls_back_to_basic(tmp_path):
    report = export_onnx(ScaledMatMul(), {"x": positive_huge(4, 8)}, tmp_path / "m.onnx")
    assert report.optimization == "basic"
    (note,) = report.notes
    assert note.startswith("extended optimisation dropped:")
    assert op_types(report.path) == {"Mul", "MatMul"}


def test_basic_level_that_breaks_parity_falls_back_to_none(tmp_path):
    report = export_onnx(ConvTimesScale(), {"x": positive_huge(4, 1, 8)}, tmp_path / "m.onnx")
    assert report.optimization == "none"
    assert [note.split(":")[0] for note in report.notes] == [
        "extended optimisation dropped",
        "basic optimisation dropped",
    ]
    assert op_types(report.path) == {"Conv", "Mul"}


@pytest.mark.parametrize("requested", ["basic", "none"])
def test_a_milder_level_asked_for_is_the_first_tried(requested, tmp_path):
    example = {"x": positive_huge(4, 8)}
    report = export_onnx(ScaledMatMul(), example, tmp_path / "m.onnx", optimization=requested)
    assert report.optimization == requested
    assert report.notes == ()
