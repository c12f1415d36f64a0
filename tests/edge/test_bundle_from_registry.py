"""`aiaas edge bundle models:/NAME@ALIAS` from a real SQLite registry: the version the
alias names, its lineage in the manifest, and the int8 variant `aiaas compress` registered
from it when one is asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from edge_support import DevicePython, aiaas

from aiaas import lineage
from aiaas.compress.quantize import quantize_dynamic
from aiaas.registry import Registry
from examples.make_model_repository import mlp_model


@pytest.fixture(scope="module")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """digits/1 (fp32, with a lineage record), digits/2 its int8 variant, @production -> 1."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'registry.db'}"
    model = mlp_model(seed=3)
    record = lineage.make_record("train", run_id="digits-run-7", recipe={"epochs": 3})
    lineage.set_on_model(model, record)
    onnx.save(model, folder / "fp32.onnx")
    quantize_dynamic(folder / "fp32.onnx", folder / "int8.onnx")
    with Registry.open(uri) as registry:
        fp32 = registry.register("digits", folder / "fp32.onnx", metrics={"accuracy": 0.97})
        registry.register(
            "digits", folder / "int8.onnx", parents=[fp32.uri],
            recipe={"source": "fp32", "steps": [{"step": "quantize", "mode": "dynamic"}]},
        )  # fmt: skip
        registry.set_alias("digits", "production", fp32.version)
    return uri


def test_an_alias_bundles_the_version_it_names_with_its_lineage(
    registry_uri: str, device: DevicePython, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"

    result = aiaas("edge", "bundle", "models:/digits@production", "--out", out,
                   "--registry", registry_uri, "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source_uri"] == "models:/digits/1"
    assert report["fidelity"]["max_abs_diff"] == 0.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"], manifest["variant"]) == ("digits", 1, "fp32")
    assert manifest["metrics"] == {"accuracy": 0.97}
    assert manifest["lineage"]["registry_version"] == "models:/digits/1"
    assert manifest["lineage"]["record"]["run_id"] == "digits-run-7"
    assert manifest["signature"]["outputs"][0]["name"] == "probabilities"
    np.save(tmp_path / "x.npy", np.ones((2, 64), dtype=np.float32))
    ran = device.run(out / "run.py", "--input", tmp_path / "x.npy")
    assert ran.returncode == 0, ran.stderr


def test_variant_int8_takes_the_variant_registered_from_the_version(
    registry_uri: str, tmp_path: Path
) -> None:
    out = tmp_path / "bundle"

    result = aiaas("edge", "bundle", "models:/digits@production", "--out", out,
                   "--registry", registry_uri, "--variant", "int8", "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source_uri"] == "models:/digits/2"
    assert report["variant"] == "int8"
    assert 0 < report["fidelity"]["max_abs_diff"] < 0.05  # measured against digits/1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lineage"]["requested"] == "models:/digits/1"
    assert manifest["lineage"]["made"] is None


def test_an_unknown_alias_is_not_found_and_leaves_nothing(
    registry_uri: str, tmp_path: Path
) -> None:
    result = aiaas("edge", "bundle", "models:/digits@nightly", "--out", tmp_path / "b",
                   "--registry", registry_uri)  # fmt: skip

    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nightly" in result.stderr
    assert list(tmp_path.iterdir()) == []
