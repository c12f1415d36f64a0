"""export_onnx / export_to_repository on real models: parity, layout, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from aiaas.errors import InvalidArgument
from aiaas.export import ParityError, UnsupportedOperator, export_onnx, export_to_repository
from aiaas.serve.config import complete, parse_pbtxt
from aiaas.serve.serving_config import serving_config
from aiaas.tensors import TensorSpec
from tests.export.unsupported_model import drifting, with_custom_op


def _input_dims(path: Path) -> dict[str, list[int | str]]:
    model = onnx.load(str(path))
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in model.graph.input
    }


def test_digits_export_matches_pytorch_at_batch_sizes_1_3_17(digits_mlp, tmp_path):
    example = {"x": torch.rand(4, 64)}
    report = export_onnx(digits_mlp, example, tmp_path / "digits.onnx", output_names=["logits"])
    assert report.batch_sizes == (1, 3, 17)
    assert report.max_abs_error < 1e-4
    assert _input_dims(report.path) == {"x": ["batch", 64]}
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 17):
        inputs = np.random.default_rng(batch).random((batch, 64), dtype=np.float32)
        (logits,) = session.run(["logits"], {"x": inputs})
        expected = digits_mlp(torch.from_numpy(inputs)).detach().numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-3)


def test_an_example_batch_of_one_still_exports_a_dynamic_batch(digits_mlp, tmp_path):
    report = export_onnx(digits_mlp, {"x": torch.rand(1, 64)}, tmp_path / "one.onnx")
    assert _input_dims(report.path)["x"][0] == "batch"


def test_export_to_repository_writes_a_layout_the_server_config_accepts(digits_mlp, tmp_path):
    example = {"x": torch.rand(2, 64)}
    first = export_to_repository(digits_mlp, example, tmp_path, "digits", output_names=["logits"])
    second = export_to_repository(digits_mlp, example, tmp_path, "digits", output_names=["logits"])
    assert first.path == tmp_path / "digits" / "1" / "model.onnx"
    assert second.path == tmp_path / "digits" / "2" / "model.onnx"
    config = parse_pbtxt((tmp_path / "digits" / "config.pbtxt").read_text())
    specs_in = (TensorSpec("x", "FP32", (-1, 64)),)
    specs_out = (TensorSpec("logits", "FP32", (-1, 10)),)
    served = serving_config(complete(config, "digits", specs_in, specs_out))
    assert served.max_batch_size == 32
    assert served.inputs == specs_in
    assert served.outputs == specs_out


def test_extra_dynamic_axis_lets_sequence_length_vary(tmp_path):
    class MeanEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(100, 8)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.embedding(input_ids).mean(dim=1)

    example = {"input_ids": torch.randint(0, 100, (2, 12))}
    report = export_onnx(
        MeanEmbedding(), example, tmp_path / "m.onnx", dynamic_axes={"input_ids": [1]}
    )
    assert _input_dims(report.path) == {"input_ids": ["batch", "input_ids_1"]}
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input_ids": np.zeros((3, 5), dtype=np.int64)})
    assert out.shape == (3, 8)


def test_an_unsupported_operator_is_named_with_its_module(tmp_path):
    with pytest.raises(UnsupportedOperator, match=r"aiaas_test\.mystery.*module 'odd'.*Odd"):
        export_onnx(with_custom_op(), {"x": torch.randn(2, 4)}, tmp_path / "odd.onnx")
    assert not (tmp_path / "odd.onnx").exists()


def test_outputs_that_differ_from_pytorch_fail_parity(tmp_path):
    with pytest.raises(ParityError, match="differs from PyTorch beyond atol"):
        export_onnx(drifting(), {"x": torch.randn(2, 4)}, tmp_path / "drift.onnx")


def test_inputs_that_do_not_fit_the_model_are_the_callers_mistake(digits_mlp, tmp_path):
    with pytest.raises(InvalidArgument, match="do not fit the model"):
        export_onnx(digits_mlp, {"x": torch.rand(2, 63)}, tmp_path / "bad.onnx")


def test_minilm_export_matches_pytorch_on_real_sentences(minilm_repository):
    from aiaas.export.minilm import load_minilm, read_sentences, tokenize

    path = minilm_repository / "minilm" / "1" / "model.onnx"
    config = (minilm_repository / "minilm" / "config.pbtxt").read_text()
    assert 'name: "embedding"' in config
    assert "dims: [ 128 ]" in config
    model, tokenizer = load_minilm()
    sentences = read_sentences()
    assert len(sentences) >= 50
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 17):
        arrays = tokenize(tokenizer, sentences[-batch:])
        (embedding,) = session.run(["embedding"], arrays)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in arrays.items()}).numpy()
        assert embedding.shape == (batch, 384)
        np.testing.assert_allclose(embedding, expected, atol=1e-4, rtol=1e-3)


def test_a_torch_export_program_file_exports_with_its_dynamic_batch(digits_mlp, tmp_path):
    from aiaas.export.loading import load_model

    batch = torch.export.Dim("batch")
    program = torch.export.export(digits_mlp, (torch.rand(4, 64),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "digits.pt2")
    model = load_model(str(tmp_path / "digits.pt2"))
    report = export_onnx(model, {"x": torch.rand(4, 64)}, tmp_path / "from_pt2.onnx")
    assert report.max_abs_error < 1e-4
    assert _input_dims(report.path)["x"][0] == "batch"


def test_a_program_file_with_a_fixed_batch_says_so(digits_mlp, tmp_path):
    from aiaas.export import ExportFailed
    from aiaas.export.loading import load_model

    torch.export.save(torch.export.export(digits_mlp, (torch.rand(4, 64),)), tmp_path / "s.pt2")
    with pytest.raises(ExportFailed, match="dynamic batch dimension"):
        export_onnx(load_model(str(tmp_path / "s.pt2")), {"x": torch.rand(4, 64)}, tmp_path / "s")
