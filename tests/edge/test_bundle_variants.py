"""Which variant a bundle ships: the one `aiaas compress llm` already made beside a local
language model when there is one, else one made by the bundler."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from edge_support import aiaas
from tiny_llama import write_tiny_llama

from aiaas.export.llm_variants import quantize_version


def _tiny_from_gguf(repo: Path) -> Path:
    """A tiny model that names its source file in generation.json and in its ONNX
    metadata, as `aiaas export llm` writes them."""
    version = write_tiny_llama(repo, "tiny", 1, context_length=128)
    recipe = {"convert": "gguf-to-onnx", "gguf_sha256": "ab" * 32}
    generation = json.loads((version / "generation.json").read_text())
    generation["source"] = {"recipe": recipe}
    (version / "generation.json").write_text(json.dumps(generation))
    model = onnx.load(str(version / "model.onnx"))
    onnx.helper.set_model_props(model, {"aiaas.recipe": json.dumps(recipe)})
    onnx.save(model, str(version / "model.onnx"))
    return version


def test_a_local_int4_variant_made_by_compress_is_bundled_instead_of_made_again(
    tmp_path: Path,
) -> None:
    fp32 = _tiny_from_gguf(tmp_path / "repo")
    int4 = quantize_version(fp32, tmp_path / "repo" / "tiny" / "2", "int4")

    result = aiaas("edge", "bundle", fp32, "--out", tmp_path / "b", "--variant", "int4", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source_uri"] == str(int4.resolve())
    assert report["variant"] == "int4"
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["lineage"]["made"] is None
    assert manifest["lineage"]["requested"] == str(fp32.resolve())
    assert manifest["min_onnxruntime"] == "1.18"
    shipped = (tmp_path / "b" / "model.onnx").read_bytes()
    assert shipped == (int4 / "model.onnx").read_bytes()


def test_without_a_variant_beside_it_the_bundler_makes_one_and_says_so(tmp_path: Path) -> None:
    fp32 = _tiny_from_gguf(tmp_path / "repo")

    result = aiaas("edge", "bundle", fp32, "--out", tmp_path / "b", "--variant", "int8",
                   "--no-measure", "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["variant"] == "int8"
    assert manifest["source_uri"] == str(fp32.resolve())
    assert manifest["lineage"]["made"]["as"] == "aiaas compress llm --variant int8"
    assert sorted(p.name for p in (tmp_path / "repo" / "tiny").iterdir()) == [
        "1",
        "config.pbtxt",
    ]
