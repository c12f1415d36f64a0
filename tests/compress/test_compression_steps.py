"""Each step changes the model as it claims: sparsity, int8 nodes, a trained student."""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.compress import examples, prune, quantize, training
from aiaas.compress.pipeline import Compressor, Dataset


@pytest.fixture(scope="module")
def arrays():
    return examples.digits_arrays()


@pytest.fixture(scope="module")
def compressor(arrays, tmp_path_factory):
    eval_data = Dataset(inputs={"x": arrays["eval_x"]}, labels=arrays["eval_y"])
    return Compressor(tmp_path_factory.mktemp("work"), eval_data, rounds=3)


@pytest.fixture(scope="module")
def start(compressor, digits_mlp):
    return compressor.from_torch(digits_mlp)


def test_global_magnitude_pruning_reaches_the_sparsity_and_survives_fine_tuning(digits_mlp, arrays):
    pruned = prune.magnitude_prune(digits_mlp, 0.8)
    training.fine_tune(pruned, {"x": arrays["train_x"]}, arrays["train_y"], epochs=1)
    pruned = prune.make_permanent(pruned)
    assert prune.sparsity(pruned) == pytest.approx(0.8, abs=0.005)
    assert prune.sparsity(digits_mlp) < 0.01


def test_dynamic_quantization_puts_int8_matmuls_in_the_graph(compressor, start):
    original, _ = start
    variant = compressor.quantize(original, "dynamic")
    assert variant.details["int8_nodes"] >= 3
    assert quantize.int8_node_count(original.path) == 0


def test_static_quantization_calibrates_and_writes_qdq_nodes(compressor, start, arrays):
    original, _ = start
    calibration = Dataset(inputs={"x": arrays["train_x"][:64]})
    variant = compressor.quantize(original, "static", calibration=calibration, method="entropy")
    assert variant.details["int8_nodes"] >= 6
    assert variant.recipe[-1]["method"] == "entropy"


def test_distilled_half_width_student_learns_from_the_teacher(compressor, start, arrays):
    original, baseline = start
    train = Dataset(inputs={"x": arrays["train_x"]}, labels=arrays["train_y"])
    student = compressor.distill(baseline, original.module, train, shrink_factor=2, epochs=3)
    compressor.evaluate([original, student], original)
    assert student.details["layers"]["0"] == [[64, 64]]
    assert student.metric >= original.metric - 0.03


def test_minilm_dynamic_int8_keeps_cosine_fidelity_on_real_sentences(minilm_repository, tmp_path):
    from aiaas.compress import evaluate
    from aiaas.export.minilm import load_minilm, read_sentences, tokenize

    fp32 = minilm_repository / "minilm" / "1" / "model.onnx"
    int8 = quantize.quantize_dynamic(fp32, tmp_path / "int8.onnx")
    assert quantize.int8_node_count(int8) >= 30
    _, tokenizer = load_minilm()
    arrays = tokenize(tokenizer, read_sentences())
    reference = evaluate.outputs(evaluate.session(fp32), arrays)
    cosine, spearman = evaluate.fidelity(
        evaluate.outputs(evaluate.session(int8), arrays), reference
    )
    assert cosine >= 0.99
    assert spearman >= 0.98
    assert evaluate.file_size(int8) < evaluate.file_size(fp32) / 3


def test_fidelity_is_perfect_for_identical_embeddings_and_lower_for_noise():
    from aiaas.compress.evaluate import fidelity

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(20, 8))
    assert fidelity(embeddings, embeddings) == pytest.approx((1.0, 1.0))
    cosine, spearman = fidelity(embeddings + rng.normal(size=(20, 8)), embeddings)
    assert cosine < 0.9
    assert spearman < 0.9


def test_gemm_rewrite_keeps_the_numbers(start, arrays, tmp_path):
    import onnx

    original, _ = start
    rewritten = quantize.gemm_to_matmul(onnx.load(str(original.path)))
    assert not [n for n in rewritten.graph.node if n.op_type == "Gemm"]
    onnx.save(rewritten, str(tmp_path / "matmul.onnx"))
    from aiaas.compress.evaluate import outputs, session

    inputs = {"x": arrays["eval_x"][:20]}
    np.testing.assert_allclose(
        outputs(session(tmp_path / "matmul.onnx"), inputs),
        outputs(session(original.path), inputs),
        atol=1e-5,
    )
