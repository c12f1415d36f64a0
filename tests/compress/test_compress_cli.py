"""`aiaas compress` as a user runs it: chained steps, the guard, lineage, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from compression_fixtures import DIGITS_MLP, one_error_line, run_cli

from aiaas import lineage


def _compress(files, tmp_path, *steps: str):
    return run_cli(
        "compress", DIGITS_MLP, "--weights", str(files["mlp"]), "--eval", str(files["eval"]),
        "--train", str(files["train"]), "--out", str(tmp_path / "repository"),
        "--name", "digits", "--report", str(tmp_path / "report.json"), "--rounds", "3",
        "--output-name", "logits", *steps,
    )  # fmt: skip


@pytest.fixture(scope="module")
def chained(digits_files, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chained")
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    result = _compress(
        digits_files, tmp_path, "--prune", "structured:0.5", "--epochs", "2",
        "--quantize", "dynamic", "--quantize", "static",
        "--calibration", str(digits_files["train"]), "--register", "digits",
        "--registry", registry, "--select-by", "size", "--max-accuracy-drop", "0.5",
    )  # fmt: skip
    return tmp_path, registry, result


def test_chained_steps_produce_one_variant_each_and_a_report(chained):
    tmp_path, _, result = chained
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names == [
        "fp32", "fp32-ort", "structured-50", "structured-50+int8-dynamic",
        "structured-50+int8-static",
    ]  # fmt: skip
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["structured-50+int8-dynamic"]["parent"] == "structured-50"
    steps = [step["step"] for step in by_name["structured-50+int8-static"]["recipe"]]
    assert steps == ["prune", "quantize"]
    assert "compression variants" in result.stdout
    assert (tmp_path / "repository" / "digits" / "1" / "model.onnx").is_file()
    # By size, with a budget every variant meets: the smallest, dynamic int8 of the pruned model.
    assert report["selected"] == "structured-50+int8-dynamic"


def test_registered_lineage_follows_the_chain(chained):
    from aiaas.registry import Registry

    _, registry_uri, result = chained
    assert result.returncode == 0, result.stderr
    report_line = [line for line in result.stdout.splitlines() if line.startswith("registered")]
    assert report_line == ["registered models:/digits/3"]
    with Registry.open(registry_uri) as registry:
        versions = {v.version: v for v in registry.versions("digits")}
        assert [versions[n].tags["variant"] for n in (1, 2, 3)][:2] == ["fp32", "structured-50"]
        assert versions[3].tags["selected"] == "true"
        assert [p.version for p in versions[3].parents] == [2]
        assert [p.version for p in versions[2].parents] == [1]
        assert versions[3].recipe["steps"][-1]["step"] == "quantize"
        assert "accuracy" in versions[3].metrics
        assert versions[3].params is not None
        assert versions[3].params["lineage"]["step"] == "compress"


def test_every_written_file_names_the_weights_it_was_made_from(chained, digits_files):
    tmp_path, _, _ = chained
    record = lineage.read_file(tmp_path / "repository" / "digits" / "1" / "model.onnx")
    assert record is not None
    assert record["step"] == "compress"
    weights = digits_files["mlp"]
    assert record["parents"] == [
        {"path": str(weights.absolute()), "sha256": lineage.file_sha256(weights)}
    ]
    report = json.loads((tmp_path / "report.json").read_text())
    assert record["recipe_digest"] == lineage.recipe_digest(
        {"source": DIGITS_MLP, "steps": report["variants"][3]["recipe"]}
    )


def test_the_guard_rejects_a_variant_that_breaks_the_budget(digits_files, tmp_path):
    result = _compress(
        digits_files, tmp_path, "--prune", "unstructured:0.97", "--epochs", "0",
        "--max-accuracy-drop", "0.01",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    pruned = next(v for v in report["variants"] if v["name"] == "unstructured-97")
    assert pruned["metric_drop"] > 0.01
    assert pruned["within_budget"] is False
    assert report["selected"] in ("fp32", "fp32-ort")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quantize", "static"], "needs --calibration"),
        (["--prune", "structured:2"], "expected structured:FRACTION"),
        (
            ["--quantize", "dynamic", "--calibration", "nope.npz", "--quantize", "static"],
            "nope.npz does not exist",
        ),
        ([], "nothing to do"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(digits_files, tmp_path, flags, message):
    result = _compress(digits_files, tmp_path, *flags)
    assert result.returncode == 2
    assert message in one_error_line(result)


def test_eval_data_of_the_wrong_width_is_one_line_and_exit_2(digits_files, tmp_path):
    np.savez(tmp_path / "narrow.npz", x=np.zeros((8, 63), np.float32), y=np.zeros(8, np.int64))
    result = run_cli(
        "compress", DIGITS_MLP, "--eval", str(tmp_path / "narrow.npz"), "--out", str(tmp_path),
        "--quantize", "dynamic",
    )  # fmt: skip
    assert result.returncode == 2
    assert "do not fit the model" in one_error_line(result)


def test_train_data_without_labels_is_one_line_and_exit_2(digits_files, tmp_path):
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((8, 64), np.float32))
    result = run_cli(
        "compress", DIGITS_MLP, "--eval", str(digits_files["eval"]), "--out", str(tmp_path),
        "--train", str(tmp_path / "unlabelled.npz"), "--prune", "structured:0.5",
    )  # fmt: skip
    assert result.returncode == 2
    assert "no 'y' array" in one_error_line(result)


def test_quantizing_an_onnx_file_needs_no_pytorch_model(digits_files, tmp_path):
    export = run_cli(
        "export", DIGITS_MLP, "--weights", str(digits_files["mlp"]), "--example-shape",
        "x=2x64", "--out", str(tmp_path / "exported"), "--name", "digits",
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    result = run_cli(
        "compress", str(tmp_path / "exported" / "digits" / "1" / "model.onnx"),
        "--eval", str(digits_files["eval"]), "--out", str(tmp_path / "repository"),
        "--quantize", "dynamic", "--report", str(tmp_path / "report.json"), "--rounds", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = [v["name"] for v in json.loads((tmp_path / "report.json").read_text())["variants"]]
    assert names == ["fp32", "fp32-ort", "int8-dynamic"]
    source = tmp_path / "exported" / "digits" / "1" / "model.onnx"
    written = lineage.read_file(tmp_path / "repository" / "model" / "1" / "model.onnx")
    assert written is not None
    assert written["parents"] == [
        {"path": str(source.absolute()), "sha256": lineage.file_sha256(source)}
    ]
    assert lineage.read_file(source)["step"] == "export"  # the input is left as it was
