"""Recurrent models with a dynamic sequence axis: torch.export cannot keep the axis
dynamic, so the TorchScript-based exporter writes them; parity is checked at a
sequence length other than the example's, and the report says which exporter ran."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from compression_fixtures import run_cli

from aiaas.export import export_onnx
from aiaas.export.errors import ExportFailed
from aiaas.export.parity import other_lengths
from tests.export.recurrent_model import FixedBatch, gru_classifier


def _dims(values) -> dict[str, list[int | str]]:
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in values
    }


def test_a_gru_with_a_dynamic_time_axis_exports_with_the_torchscript_exporter(tmp_path):
    model = gru_classifier().eval()
    report = export_onnx(
        model, {"x": torch.randn(2, 10, 8)}, tmp_path / "gru.onnx", dynamic_axes={"x": [1]}
    )
    assert report.exporter == "torchscript"
    assert any("TorchScript-based exporter" in note for note in report.notes)
    assert report.other_lengths == ("x[1]=13",)
    saved = onnx.load(str(report.path))
    assert _dims(saved.graph.input) == {"x": ["batch", "x_1", 8]}
    assert _dims(saved.graph.output) == {"output": ["batch", 3]}
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 1), (3, 4), (5, 40)):  # lengths the export never saw
        x = torch.randn(batch, length, 8)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5, rtol=1e-4)


def test_export_cli_reports_the_fallback_and_the_other_length(tmp_path):
    result = run_cli(
        "export", "tests.export.recurrent_model:gru_classifier", "--example-shape",
        "x=2x10x8", "--dynamic-axis", "x=1", "--out", str(tmp_path), "--name", "gru",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "batch sizes 1, 3, 17 and at x[1]=13:" in result.stdout
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert "exported with torch's TorchScript-based exporter (dynamo=False)" in notes[0]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "gru" / "1" / "model.onnx").is_file()


def test_without_a_dynamic_time_axis_the_dynamo_exporter_still_runs(tmp_path):
    report = export_onnx(gru_classifier(), {"x": torch.randn(2, 10, 8)}, tmp_path / "g.onnx")
    assert report.exporter == "dynamo"
    assert report.notes == ()
    assert report.other_lengths == ()


def test_a_model_that_fixes_its_batch_size_is_not_handed_to_the_fallback(tmp_path):
    refused = r"torch\.export could not trace the model: Constraints violated"
    with pytest.raises(ExportFailed, match=refused):
        export_onnx(FixedBatch(), {"x": torch.randn(2, 3, 4)}, tmp_path / "f.onnx")
    assert not (tmp_path / "f.onnx").exists()


def test_other_lengths_lengthen_each_dynamic_axis_and_keep_ids_valid():
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    examples = {
        "input_ids": ids,
        "mask": torch.ones(2, 3, dtype=torch.int64),
        "f": torch.ones(2, 4),
    }
    axes = {"input_ids": [0, 1], "mask": [0, 1], "f": [0]}
    label, longer = other_lengths(examples, axes, np.random.default_rng(0))
    assert label == "input_ids[1]=6, mask[1]=6"
    assert longer["input_ids"].tolist() == [[5, 6, 7, 5, 6, 7], [8, 9, 10, 8, 9, 10]]
    assert longer["mask"].shape == (2, 6)
    assert torch.equal(longer["f"], examples["f"])
