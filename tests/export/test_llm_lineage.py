"""`aiaas compress llm` by `models:/` URI or from a folder: the variant's file carries a
lineage record naming its source, and a registered variant is the source's descendant.
A tiny random Llama stands in for a converted model (seconds, no download)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from llm_fixtures import ROOT
from tiny_llama import write_tiny_llama

from aiaas import lineage
from aiaas.registry import Registry

CONVERTED = lineage.make_record(
    "convert",
    recipe={"convert": "gguf-to-onnx"},
    parents=[{"path": "/models/tiny.gguf", "sha256": "ab" * 32}],
)


def compress_llm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", "compress", "llm", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    folder = write_tiny_llama(tmp_path / "repo")
    lineage.stamp_file(folder / "model.onnx", CONVERTED)
    return folder


def test_a_variant_by_uri_names_its_version_and_is_its_descendant(
    converted: Path, tmp_path: Path
) -> None:
    registry_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    with Registry.open(registry_uri) as registry:
        source = registry.register("tiny", converted)
    out = tmp_path / "variants" / "tiny" / "1"
    result = compress_llm(
        "models:/tiny/1", "--variant", "int8", "--out", str(out),
        "--register", "tiny-int8", "--registry", registry_uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "registered models:/tiny-int8/1" in result.stdout
    record = lineage.read_file(out / "model.onnx")
    assert record is not None
    assert record["step"] == "compress"
    assert record["parents"] == [{"uri": "models:/tiny/1", "sha256": source.sha256}]
    with Registry.open(registry_uri) as registry:
        variant = registry.resolve("models:/tiny-int8/1")
        descendants = registry.lineage("models:/tiny/1").descendants
    assert [parent.uri for parent in variant.parents] == ["models:/tiny/1"]
    assert [node.ref.uri for node in descendants] == ["models:/tiny-int8/1"]
    assert variant.params is not None
    assert variant.params["lineage"] == record


def test_a_variant_of_a_folder_names_the_source_file_by_absolute_path_and_hash(
    converted: Path, tmp_path: Path
) -> None:
    from aiaas.export.llm_variants import quantize_version

    target = quantize_version(converted, tmp_path / "variants" / "tiny" / "2", "int8")
    record = lineage.read_file(target / "model.onnx")
    assert record is not None
    source_file = converted / "model.onnx"
    assert record["parents"] == [
        {"path": str(source_file.absolute()), "sha256": lineage.file_sha256(source_file)}
    ]
    assert record["step"] == "compress"


def test_an_unknown_version_is_one_line_and_exit_3(tmp_path: Path) -> None:
    registry_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    Registry.open(registry_uri).close()
    result = compress_llm(
        "models:/nothing/1", "--variant", "int8", "--out", str(tmp_path / "r" / "m" / "1"),
        "--registry", registry_uri,
    )  # fmt: skip
    assert result.returncode == 3  # not found
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "'nothing' not found" in lines[0]
