"""`aiaas export` as a user runs it: a subprocess, exit codes, one-line errors, then served."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest
from compression_fixtures import DIGITS_MLP, ROOT, one_error_line, run_cli

from aiaas import lineage


@pytest.fixture(scope="module")
def exported(digits_files, tmp_path_factory):
    """The digits MLP exported by the CLI into a fresh repository."""
    repository = tmp_path_factory.mktemp("repository")
    result = run_cli(
        "export", DIGITS_MLP, "--weights", str(digits_files["mlp"]),
        "--example-npz", str(digits_files["eval"]), "--out", str(repository),
        "--name", "digits", "--output-name", "logits",
    )  # fmt: skip
    return repository, result


def test_cli_export_reports_parity_and_writes_the_repository(exported):
    repository, result = exported
    assert result.returncode == 0, result.stderr
    assert "max abs error" in result.stdout
    assert "batch sizes 1, 3, 17" in result.stdout
    assert (repository / "digits" / "1" / "model.onnx").is_file()
    assert (repository / "digits" / "config.pbtxt").is_file()


def test_the_exported_file_names_its_weights_by_absolute_path_and_hash(exported, digits_files):
    repository, _ = exported
    record = lineage.read_file(repository / "digits" / "1" / "model.onnx")
    assert record is not None
    assert record["step"] == "export"
    weights = digits_files["mlp"]
    assert record["parents"] == [
        {"path": str(weights.absolute()), "sha256": lineage.file_sha256(weights)}
    ]
    assert record["run_id"] is None  # a state dict names no run


def test_the_exported_repository_is_served_by_aiaas_serve(exported, digits_files, start_server):
    repository, _ = exported
    server = start_server(repository)
    with np.load(digits_files["test"]) as data:
        pixels, labels = data["x"][:17], data["y"][:17]
    body = {"inputs": [{"name": "x", "shape": [17, 64], "datatype": "FP32",
                        "data": pixels.ravel().tolist()}]}  # fmt: skip
    response = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["name"] == "logits"
    assert output["shape"] == [17, 10]
    predicted = np.asarray(output["data"]).reshape(17, 10).argmax(axis=1)
    assert (predicted == labels).mean() > 0.8


def test_a_missing_weights_file_is_one_line_and_exit_2(tmp_path):
    result = run_cli(
        "export", DIGITS_MLP, "--weights", str(tmp_path / "nope.pt"),
        "--example-shape", "x=1x64", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "nope.pt does not exist" in one_error_line(result)


def test_examples_of_the_wrong_shape_are_one_line_and_exit_2(tmp_path):
    result = run_cli("export", DIGITS_MLP, "--example-shape", "x=1x65", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "do not fit the model" in one_error_line(result)


def test_an_npz_without_the_input_arrays_is_one_line_and_exit_2(tmp_path):
    np.savez(tmp_path / "labels_only.npz", y=np.zeros(4, dtype=np.int64))
    result = run_cli(
        "export", DIGITS_MLP, "--example-npz", str(tmp_path / "labels_only.npz"),
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "no input arrays" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aiaas.compress.examples:nope", "--example-shape", "x=1x64"], "has no attribute 'nope'"),
        ([DIGITS_MLP, "--example-shape", "x=1by64"], "expected NAME=DIMxDIM"),
        ([DIGITS_MLP, "--example-npz", "missing.npz"], "does not exist"),
        ([DIGITS_MLP, "--example-shape", "x=2x64", "--dynamic-axis", "y=1"], "unknown input 'y'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli("export", *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert message in one_error_line(result)


def test_an_unsupported_operator_exits_1_naming_it(tmp_path):
    result = run_cli(
        "export", "tests.export.unsupported_model:with_custom_op",
        "--example-shape", "x=2x4", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "aiaas_test.mystery" in one_error_line(result)
    assert "module 'odd'" in result.stderr
    assert not (tmp_path / "with_custom_op").exists()


def test_a_parity_failure_exits_1(tmp_path):
    result = run_cli(
        "export", "tests.export.unsupported_model:drifting",
        "--example-shape", "x=2x4", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "differs from PyTorch" in one_error_line(result)


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, aiaas.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_register_records_the_export_in_the_registry(digits_files, tmp_path):
    from aiaas.registry import Registry

    registry_uri = f"sqlite:///{tmp_path / 'registry.db'}"
    result = run_cli(
        "export", DIGITS_MLP, "--weights", str(digits_files["mlp"]), "--example-shape", "x=2x64",
        "--out", str(tmp_path / "repository"), "--register", "digits", "--registry", registry_uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "registered models:/digits/1" in result.stdout
    with Registry.open(registry_uri) as registry:
        (version,) = registry.versions("digits")
    assert version.recipe["export"]["model"] == DIGITS_MLP
    assert version.metrics["max_abs_error"] < 1e-4
