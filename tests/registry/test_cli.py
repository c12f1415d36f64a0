"""Every `aiaas models` command, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import ROOT, subprocess_env


def test_register_records_signature_metrics_and_run(cli, onnx_file):
    out = cli(
        "register", "mlp", onnx_file("mlp"), "--description", "first",
        "--tag", "team=vision", "--metric", "accuracy=0.981", "--run-id", "run-7",
        "--params-json", '{"lr": 0.1}', "--recipe-json", '{"epochs": 3}', "--json",
    )  # fmt: skip
    version = json.loads(out.stdout)
    assert version["uri"] == "models:/mlp/1"
    assert version["tags"] == {"team": "vision"}
    assert version["metrics"] == {"accuracy": 0.981}
    assert version["run"] == {"id": "run-7", "params": {"lr": 0.1}}
    assert version["recipe"] == {"epochs": 3}
    assert version["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [f["path"] for f in version["files"]] == ["model.onnx"]
    second = json.loads(cli("register", "mlp", onnx_file("mlp2"), "--json").stdout)
    assert second["version"] == 2


def test_register_a_folder_keeps_sidecar_files(cli, onnx_file, tmp_path):
    folder = tmp_path / "bundle"
    (folder / "tokenizer").mkdir(parents=True)
    onnx_file("encoder").rename(folder / "encoder.onnx")
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (folder / ".hidden").write_text("not part of the artifact")
    version = json.loads(cli("register", "enc", folder, "--json").stdout)
    assert [f["path"] for f in version["files"]] == ["model.onnx", "tokenizer/vocab.txt"]
    cli("download", "models:/enc/1", tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"
    assert (tmp_path / "out" / "model.onnx").read_bytes() == (folder / "encoder.onnx").read_bytes()


def test_list_show_and_versions(cli, onnx_file):
    cli("register", "a", onnx_file("a1"), "--tag", "stage=dev")
    cli("register", "a", onnx_file("a2"))
    cli("register", "b", onnx_file("b1"))
    listed = json.loads(cli("list", "--json").stdout)
    assert [(m["name"], m["version_count"], m["latest_version"]) for m in listed] == [
        ("a", 2, 2),
        ("b", 1, 1),
    ]
    assert [line.split()[0] for line in cli("versions", "a").stdout.splitlines()] == [
        "version",
        "1",
        "2",
    ]
    assert [v["version"] for v in json.loads(cli("versions", "a", "--json").stdout)] == [1, 2]
    shown = json.loads(cli("show", "models:/a", "--json").stdout)
    assert [v["uri"] for v in shown["versions"]] == ["models:/a/1", "models:/a/2"]
    assert json.loads(cli("show", "models:/a/latest", "--json").stdout)["version"] == 2
    text = cli("show", "models:/a/1").stdout
    assert "stage=dev" in text
    assert "FP32" in text
    assert "a" in cli("list").stdout


def test_aliases_move_and_resolve(cli, onnx_file):
    cli("register", "m", onnx_file("m1"))
    cli("register", "m", onnx_file("m2"))
    assert "models:/m/1" in cli("alias", "set", "m", "production", "1").stdout
    assert json.loads(cli("show", "models:/m@production", "--json").stdout)["version"] == 1
    cli("alias", "set", "m", "production", "2")
    cli("alias", "set", "m", "canary", "1")
    assert json.loads(cli("alias", "list", "m", "--json").stdout) == {"canary": 1, "production": 2}
    assert json.loads(cli("show", "models:/m@production", "--json").stdout)["version"] == 2
    cli("alias", "delete", "m", "canary")
    cli("show", "models:/m@canary", code=3)
    cli("alias", "set", "m", "production", "7", code=3)
    cli("alias", "set", "m", "latest", "1", code=2)


def test_tags_on_models_and_versions(cli, onnx_file):
    cli("register", "m", onnx_file("m1"), "--tag", "a=1")
    cli("tag", "models:/m", "owner=ml-team")
    cli("tag", "models:/m/1", "a=2", "b=x=y")
    cli("tag", "models:/m/1", "--remove", "a")
    assert json.loads(cli("show", "models:/m", "--json").stdout)["tags"] == {"owner": "ml-team"}
    assert json.loads(cli("show", "models:/m/1", "--json").stdout)["tags"] == {"b": "x=y"}
    cli("tag", "models:/m/1", code=2)
    cli("tag", "models:/m/1", "novalue", code=2)


def test_delete_refuses_an_aliased_version_and_numbers_are_not_reused(cli, onnx_file):
    cli("register", "m", onnx_file("m1"))
    cli("register", "m", onnx_file("m2"))
    cli("alias", "set", "m", "production", "2")
    refused = cli("delete", "models:/m/2", code=2)
    assert refused.stderr.strip() == (
        "error: models:/m/2 is aliased as production; move or delete the alias first"
    )
    cli("delete", "models:/m", code=2)
    cli("alias", "delete", "m", "production")
    cli("delete", "models:/m/2")
    cli("show", "models:/m/2", code=3)
    assert json.loads(cli("register", "m", onnx_file("m3"), "--json").stdout)["version"] == 3
    cli("delete", "models:/m")
    cli("show", "models:/m", code=3)


def test_download_verifies_and_refuses_a_non_empty_destination(cli, onnx_file, tmp_path):
    source = onnx_file("m1")
    cli("register", "m", source)
    out = json.loads(cli("download", "models:/m/1", tmp_path / "dl", "--json").stdout)
    assert out["uri"] == "models:/m/1"
    assert (tmp_path / "dl" / "model.onnx").read_bytes() == source.read_bytes()
    failed = cli("download", "models:/m/1", tmp_path / "dl", code=2)
    assert "not an empty directory" in failed.stderr


def test_lineage_shows_ancestors_and_descendants(cli, onnx_file):
    cli("register", "base", onnx_file("base"))
    cli("register", "pruned", onnx_file("pruned"), "--parent", "models:/base/1")
    cli("alias", "set", "pruned", "best", "1")
    cli("register", "int8", onnx_file("int8"), "--parent", "models:/pruned@best",
        "--recipe-json", '{"quantize": "int8"}')  # fmt: skip
    tree = json.loads(cli("lineage", "models:/pruned/1", "--json").stdout)
    assert [node["uri"] for node in tree["ancestors"]] == ["models:/base/1"]
    assert [node["uri"] for node in tree["descendants"]] == ["models:/int8/1"]
    deep = json.loads(cli("lineage", "models:/int8/1", "--json").stdout)
    assert deep["ancestors"][0]["parents"][0]["uri"] == "models:/base/1"
    text = cli("lineage", "models:/base/1").stdout
    assert "models:/pruned/1" in text
    assert "models:/int8/1" in text
    cli("register", "x", onnx_file("x"), "--parent", "models:/base/9", code=3)


def test_lineage_keeps_a_deleted_parent(cli, onnx_file):
    cli("register", "base", onnx_file("base"))
    cli("register", "small", onnx_file("small"), "--parent", "models:/base/1")
    cli("delete", "models:/base/1")
    tree = json.loads(cli("lineage", "models:/small/1", "--json").stdout)
    assert tree["ancestors"] == [
        {"uri": "models:/base/1", "name": "base", "version": 1, "exists": False, "parents": []}
    ]
    assert "(deleted)" in cli("lineage", "models:/small/1").stdout


def test_search_by_tag_and_metric(cli, onnx_file):
    cli("register", "m", onnx_file("m1"), "--metric", "accuracy=0.95", "--tag", "data=v1")
    cli("register", "m", onnx_file("m2"), "--metric", "accuracy=0.981", "--tag", "data=v2")
    cli("register", "n", onnx_file("n1"), "--metric", "accuracy=0.99", "--tag", "data=v2")

    def found(*args: str) -> list[str]:
        return [v["uri"] for v in json.loads(cli("search", *args, "--json").stdout)]

    assert found("--metric", "accuracy>0.97") == ["models:/m/2", "models:/n/1"]
    assert found("--metric", "accuracy>0.97", "--name", "m") == ["models:/m/2"]
    assert found("--tag", "data=v1") == ["models:/m/1"]
    assert found("--tag", "data=v2", "--metric", "accuracy <= 0.981") == ["models:/m/2"]
    assert found("--metric", "loss<1") == []
    assert "models:/n/1" in cli("search", "--metric", "accuracy>=0.99").stdout
    cli("search", "--metric", "accuracy>>1", code=2)


def test_gc_removes_only_unreferenced_blobs(cli, onnx_file, artifact_root):
    cli("register", "m", onnx_file("m1"))
    cli("register", "m", onnx_file("m2"))
    cli("register", "same", onnx_file("m1"))  # shares m1's blob
    cli("delete", "models:/m/1")
    kept = json.loads(cli("gc", "--grace-seconds", "0", "--json").stdout)
    assert kept["removed_blobs"] == 0
    cli("delete", "models:/same/1")
    assert (
        json.loads(cli("gc", "--dry-run", "--grace-seconds", "0", "--json").stdout)["removed_blobs"]
        == 1
    )
    assert json.loads(cli("gc", "--json").stdout)["kept_recent"] == 1  # default grace: 1 h
    assert "removed 1 blobs" in cli("gc", "--grace-seconds", "0").stdout
    blobs = list(Path(artifact_root).glob("blobs/sha256/*/*"))
    assert len(blobs) == 1
    cli("download", "models:/m/2", Path(artifact_root).parent / "dl")


def test_create_refuses_a_taken_name(cli):
    cli("create", "m", "--description", "empty for now", "--tag", "k=v")
    failed = cli("create", "m", code=2)
    assert failed.stderr == "error: model 'm' already exists\n"
    assert json.loads(cli("show", "models:/m", "--json").stdout)["version_count"] == 0
    cli("show", "models:/m/latest", code=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "mlp"], "invalid model URI"),
        (["show", "models:/bad name/1"], "invalid model name"),
        (["show", "models:/m/0"], "invalid version"),
        (["register", "m", "missing.onnx"], "neither a file nor a directory"),
        (["register", "m", "{onnx}", "--tag", "novalue"], "expected KEY=VALUE"),
        (["register", "m", "{onnx}", "--metric", "acc=high"], "is not a number"),
        (["register", "m", "{onnx}", "--metric", "acc=nan"], "finite number"),
        (["register", "m", "{onnx}", "--params-json", "{"], "not valid JSON"),
        (["register", "m", "{onnx}", "--recipe-json", "[1]"], "expected a JSON object"),
        (["register", "m", "{text}"], "not a readable ONNX model"),
        (["download", "models:/m", "out"], "names a model"),
        (["alias", "set", "m", "prod", "one"], "invalid version"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, onnx_file, tmp_path, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("not onnx")
    model = str(onnx_file("m"))
    filled = [a.replace("{onnx}", model).replace("{text}", str(text)) for a in args]
    result = cli(*filled, code=2)
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stdout == ""


def test_unknown_model_or_version_exits_3(cli, onnx_file):
    cli("register", "m", onnx_file("m"))
    assert cli("show", "models:/nope/1", code=3).stderr == "error: model 'nope' not found\n"
    assert cli("show", "models:/m/5", code=3).stderr == "error: models:/m/5 not found\n"
    cli("versions", "nope", code=3)
    cli("lineage", "models:/m@prod", code=3)
    cli("alias", "delete", "m", "prod", code=3)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_aiaas_command_runs_models_from_a_fresh_process(registry_uri, artifact_root, onnx_file):
    """Through the real entry point: registered in aiaas.cli, flags instead of env vars."""
    env = subprocess_env("sqlite:////nonexistent/never-used.db", artifact_root)
    command = [sys.executable, "-m", "aiaas.cli", "models"]
    flags = ["--registry-uri", registry_uri, "--artifact-root", artifact_root]
    done = subprocess.run(
        [*command, "register", "m", str(onnx_file("m")), *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registered models:/m/1")
    failed = subprocess.run(
        [*command, "show", "models:/m/9", *flags],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert (failed.returncode, failed.stderr) == (3, "error: models:/m/9 not found\n")
