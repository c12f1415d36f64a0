"""The thread from a training run through `aiaas compress` and `aiaas export` by
`models:/` URI: every file names the run and data behind it, and the registry links each
version to the one it was made from, in both directions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from compression_fixtures import run_cli
from train_support import TrainRuns

from aiaas import lineage
from aiaas.registry.api import Registry
from aiaas.train.examples import digits_dataset


@pytest.fixture(scope="module")
def compressed(train_runs: TrainRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained digits/1, quantized by URI and registered as digits-int8."""
    train_runs.baseline()
    folder = tmp_path_factory.mktemp("by-uri")
    inputs, labels = digits_dataset("test").tensors
    np.savez(folder / "eval.npz", x=inputs.numpy(), y=labels.numpy())
    result = run_cli(
        "compress", "models:/digits/1", "--eval", str(folder / "eval.npz"),
        "--quantize", "dynamic", "--select-by", "size", "--max-accuracy-drop", "1",
        "--out", str(folder / "repository"), "--report", str(folder / "report.json"),
        "--rounds", "2", "--register", "digits-int8", "--registry", train_runs.registry_uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "registered models:/digits-int8/1" in result.stdout
    return folder


def trained(train_runs: TrainRuns) -> tuple[dict, object]:
    info = json.loads((train_runs.baseline() / "run.json").read_text())
    with Registry.open(uri=train_runs.registry_uri) as registry:
        version = registry.resolve("models:/digits/1")
    return info, version


def test_the_trained_file_carries_its_run_data_and_recipe(train_runs: TrainRuns):
    run_dir = train_runs.baseline()
    info, version = trained(train_runs)
    record = lineage.read_file(run_dir / "model_repository" / "digits" / "1" / "model.onnx")
    assert record is not None
    assert record["step"] == "train"
    assert record["run_id"] == info["run_id"]
    assert record["dataset_fingerprint"] == info["dataset_fingerprint"]
    assert record["recipe_digest"] == lineage.recipe_digest(version.recipe)
    assert record["parents"] == []
    assert version.params["lineage"] == record


def test_run_paths_are_absolute(train_runs: TrainRuns):
    run_dir = train_runs.baseline()
    info, version = trained(train_runs)
    published = json.loads((run_dir / "final" / "publish.json").read_text())
    assert Path(info["run_dir"]).is_absolute()
    assert Path(info["run_dir"]) == run_dir.absolute()
    assert Path(published["model_repository"]).is_absolute()
    assert Path(version.params["run_dir"]) == run_dir.absolute()


def test_a_version_compressed_by_uri_is_the_trained_versions_descendant(
    train_runs: TrainRuns, compressed: Path
):
    with Registry.open(uri=train_runs.registry_uri) as registry:
        down = registry.lineage("models:/digits/1")
        up = registry.lineage("models:/digits-int8/1")
        child = registry.resolve("models:/digits-int8/1")
    assert "models:/digits-int8/1" in [node.ref.uri for node in down.descendants]
    assert [node.ref.uri for node in up.ancestors] == ["models:/digits/1"]
    info, _ = trained(train_runs)
    assert child.run_id == info["run_id"]
    assert child.params["dataset_fingerprint"] == info["dataset_fingerprint"]


def test_the_compressed_file_names_the_training_run_and_its_parent(
    train_runs: TrainRuns, compressed: Path
):
    info, parent = trained(train_runs)
    record = lineage.read_file(compressed / "repository" / "digits" / "1" / "model.onnx")
    assert record is not None
    assert record["step"] == "compress"
    assert record["run_id"] == info["run_id"]
    assert record["dataset_fingerprint"] == info["dataset_fingerprint"]
    assert record["parents"] == [{"uri": "models:/digits/1", "sha256": parent.sha256}]
    report = json.loads((compressed / "report.json").read_text())
    assert report["parents"] == record["parents"]
    assert report["model"] == "models:/digits/1"


def test_export_by_uri_writes_a_bare_repository_entry_that_keeps_the_thread(
    train_runs: TrainRuns, compressed: Path, tmp_path: Path
):
    info, _ = trained(train_runs)
    result = run_cli(
        "export", "models:/digits-int8/1", "--out", str(tmp_path / "bare"),
        "--registry", train_runs.registry_uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "bare" / "digits-int8" / "1" / "model.onnx"
    assert (tmp_path / "bare" / "digits-int8" / "config.pbtxt").is_file()
    with Registry.open(uri=train_runs.registry_uri) as registry:
        source = registry.resolve("models:/digits-int8/1")
    record = lineage.read_file(exported)
    assert record is not None
    assert record["step"] == "export"
    assert record["run_id"] == info["run_id"]
    assert record["parents"] == [{"uri": "models:/digits-int8/1", "sha256": source.sha256}]

    # A copy registered again (here, in the same registry) finds its parent by the record.
    copy = tmp_path / "copied.onnx"
    shutil.copyfile(exported, copy)
    registered = run_cli(
        "models", "register", "digits-copy", str(copy), "--json",
        "--registry-uri", train_runs.registry_uri,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    version = json.loads(registered.stdout)
    assert version["parents"] == ["models:/digits-int8/1"]
    assert version["run"]["id"] == info["run_id"]


def test_a_missing_version_is_one_line_and_exit_2(train_runs: TrainRuns, tmp_path: Path):
    train_runs.baseline()
    result = run_cli(
        "compress", "models:/digits/99", "--eval", str(tmp_path / "none.npz"),
        "--quantize", "dynamic", "--out", str(tmp_path / "repository"),
        "--registry", train_runs.registry_uri,
    )  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "models:/digits/99" in lines[0]
