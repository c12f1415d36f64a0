"""int8 and 4-bit variants of the converted SmolLM2 (`aiaas compress llm`): they load in
ONNX Runtime, generate, stay close to the float32 model, and carry their lineage."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from llm_fixtures import ROOT, greedy_onnx, onnx_session

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def repository(smollm2_version: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the repository with the converted smollm2/1."""
    root = tmp_path_factory.mktemp("variants")
    shutil.copytree(smollm2_version.parent, root / "smollm2")
    return root


@pytest.fixture(scope="module")
def reference_fidelity(smollm2_version: Path) -> object:
    from aiaas.export import llm_fidelity

    return llm_fidelity.measure(smollm2_version, smollm2_version)


def op_types(model_file: Path) -> set[str]:
    model = onnx.load(str(model_file), load_external_data=False)
    return {node.op_type for node in model.graph.node}


def props(model_file: Path) -> dict[str, str]:
    model = onnx.load(str(model_file), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def assert_generates(folder: Path) -> None:
    generation = json.loads((folder / "generation.json").read_text())
    eos = tuple(generation["eos_token_ids"])
    prompts = [[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]]
    tokens = greedy_onnx(onnx_session(folder / "model.onnx"), prompts, 8, eos)[0]
    assert tokens
    assert all(0 <= token < generation["vocab_size"] for token in tokens)


def test_int4_variant_from_the_cli_is_smaller_close_and_registered_with_lineage(
    repository: Path, reference_fidelity: object
) -> None:
    from aiaas.registry import Registry

    registry_uri = f"sqlite:///{repository / 'registry.db'}"
    result = subprocess.run(
        [
            sys.executable, "-m", "aiaas.cli", "compress", "llm", str(repository / "smollm2" / "1"),
            "--variant", "int4", "--out", str(repository / "smollm2" / "2"),
            "--register", "smollm2-int4", "--registry", registry_uri,
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "greedy agreement" in result.stdout
    assert "registered models:/smollm2-int4/1" in result.stdout
    folder = repository / "smollm2" / "2"
    assert {"MatMulNBits", "GatherBlockQuantized"} <= op_types(folder / "model.onnx")
    metadata = props(folder / "model.onnx")
    source_sha = props(repository / "smollm2" / "1" / "model.onnx")["aiaas.source.sha256"]
    assert metadata["aiaas.variant"] == "int4"
    assert metadata["aiaas.source.sha256"] == source_sha
    assert_generates(folder)
    with Registry.open(registry_uri) as registry:
        (version,) = registry.versions("smollm2-int4")
    assert version.recipe["variant"] == "int4"
    assert version.recipe["gguf_sha256"] == source_sha
    assert version.recipe["quantization"]["method"] == "onnxruntime MatMulNBits"
    assert version.metrics["size_bytes"] < 0.3 * reference_fidelity.size_bytes
    # The GGUF's Q4_1 blocks are reproduced exactly: only int8 activations differ
    # (ONNX Runtime's own int4 quantizer reaches 0.69 here).
    assert version.metrics["greedy_agreement"] >= 0.9
    assert version.metrics["perplexity"] < 1.02 * reference_fidelity.perplexity


def test_int8_variant_is_smaller_generates_and_stays_close_to_float32(
    repository: Path, smollm2_version: Path, reference_fidelity: object
) -> None:
    from aiaas.export import llm_fidelity
    from aiaas.export.llm_variants import quantize_version

    folder = quantize_version(smollm2_version, repository / "smollm2" / "3", "int8")
    assert "MatMulInteger" in op_types(folder / "model.onnx")
    assert props(folder / "model.onnx")["aiaas.variant"] == "int8"
    assert json.loads((folder / "generation.json").read_text())["source"]["recipe"]["variant"] == (
        "int8"
    )
    assert_generates(folder)
    measured = llm_fidelity.measure(smollm2_version, folder)
    assert measured.size_bytes < 0.5 * reference_fidelity.size_bytes
    assert 0.5 <= measured.greedy_agreement <= 1.0
    assert math.isfinite(measured.perplexity)
    assert measured.perplexity < 1.5 * reference_fidelity.perplexity


def test_float32_agrees_with_itself_completely(reference_fidelity: object) -> None:
    assert reference_fidelity.greedy_agreement == 1.0
    assert 1.0 < reference_fidelity.perplexity < 200.0


def test_unknown_variant_is_one_line_and_exit_2(repository: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "aiaas.cli", "compress", "llm", str(repository / "smollm2" / "1"),
            "--variant", "int3", "--out", str(repository / "smollm2" / "9"),
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: Invalid value for '--variant': 'int3' is not one of")
    assert result.stderr.count("\n") == 1
    assert not (repository / "smollm2" / "9").exists()
