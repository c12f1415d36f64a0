"""What `aiaas models` says in everyday mistakes and on a narrow terminal."""

from __future__ import annotations

import json
import subprocess

import pytest
from registry_support import MODELS_CLI, ROOT, Cli, subprocess_env

from aiaas.errors import Unavailable
from aiaas.registry import Registry


def test_registering_identical_files_says_which_version_has_them(cli, onnx_file):
    source = onnx_file("m")
    cli("register", "m", source)
    again = cli("register", "m", source)
    assert again.stdout.startswith("registered models:/m/2 ")
    assert again.stderr == ("note: models:/m/2 has the same files as models:/m/1 (same sha256)\n")
    as_json = json.loads(cli("register", "m", source, "--json").stdout)
    assert as_json["identical_to"] == ["models:/m/1", "models:/m/2"]
    different = cli("register", "m", onnx_file("other"), "--json")
    assert "identical_to" not in json.loads(different.stdout)
    assert different.stderr == ""
    # Another model with the same files is not a re-registration of this one.
    assert cli("register", "n", source).stderr == ""


def test_the_python_api_reports_an_identical_version(registry, onnx_file):
    first = registry.register("m", onnx_file("m"))
    assert first.identical_to == ()
    second = registry.register("m", onnx_file("m"))
    assert [ref.uri for ref in second.identical_to] == ["models:/m/1"]
    assert registry.resolve("models:/m/2").identical_to == ()  # not stored, only told


@pytest.mark.parametrize("command", [["list"], ["versions", "m"], ["register", "m", "{onnx}"]])
def test_a_sqlite_registry_in_a_missing_folder_is_an_error_not_a_new_database(
    tmp_path, onnx_file, command
):
    database = tmp_path / "no-such-folder" / "registry.db"
    cli = Cli(f"sqlite:///{database}", str(tmp_path / "artifacts"))
    args = [str(onnx_file("m")) if arg == "{onnx}" else arg for arg in command]
    failed = cli(*args, code=4)
    assert failed.stderr == (
        f"error: cannot open registry sqlite:///{database}: "
        f"folder {database.parent} does not exist\n"
    )
    assert not database.parent.exists()
    with pytest.raises(Unavailable, match="does not exist"):
        Registry.open(f"sqlite:///{database}")
    assert not database.parent.exists()


def test_reading_a_registry_that_does_not_exist_creates_nothing(tmp_path, onnx_file):
    database = tmp_path / "registry.db"
    cli = Cli(f"sqlite:///{database}", str(tmp_path / "artifacts"))
    for command in (["list"], ["versions", "m"], ["show", "models:/m/1"], ["search"]):
        failed = cli(*command, code=3)
        assert failed.stderr == (
            f"error: no registry at sqlite:///{database}: nothing has been registered there yet\n"
        )
    assert list(tmp_path.iterdir()) == []
    cli("register", "m", onnx_file("m"))
    assert database.is_file()
    assert json.loads(cli("list", "--json").stdout)[0]["name"] == "m"


def test_versions_fit_80_columns_and_json_keeps_every_value(tmp_path, onnx_file):
    uri, artifacts = f"sqlite:///{tmp_path / 'registry.db'}", str(tmp_path / "artifacts")
    cli = Cli(uri, artifacts)
    long_name = "a-classifier-with-a-rather-long-name-for-its-team"
    long_tag = "dataset_fingerprint=sha256:" + "77b394b6" * 8
    metrics = ["eval_accuracy=0.969393939", "eval_loss=0.133123456", "train_loss=0.0739876"]
    flags = [arg for metric in metrics for arg in ("--metric", metric)]
    cli("register", long_name, onnx_file("m"), *flags, "--tag", long_tag, "--tag", "source=x")
    cli("register", long_name, onnx_file("n"))
    cli("alias", "set", long_name, "production", "1")
    env = subprocess_env(uri, artifacts, COLUMNS="80")
    for command in (["versions", long_name], ["show", f"models:/{long_name}"], ["search"]):
        shown = subprocess.run(
            [*MODELS_CLI, *command], capture_output=True, text=True, env=env, cwd=ROOT, check=True
        )
        lines = shown.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, shown.stdout
        first = next(line for line in lines if "eval_accuracy" in line)
        # With the model's name in every line (search), the metrics column is narrower.
        assert ("eval_accuracy=0" if command == ["search"] else "eval_accuracy=0.9694 ") in first
        assert "0.969393939" not in shown.stdout  # rounded
        assert "…" in first  # the long tag is cut, not wrapped onto more lines
    versions = [line for line in _versions_lines(env, long_name) if line.strip()]
    assert len(versions) == 3  # a header and one line per version
    listed = json.loads(
        subprocess.run(
            [*MODELS_CLI, "versions", long_name, "--json"],
            capture_output=True, text=True, env=env, cwd=ROOT, check=True,
        ).stdout
    )  # fmt: skip
    assert listed[0]["metrics"]["eval_accuracy"] == 0.969393939
    assert listed[0]["tags"]["dataset_fingerprint"] == long_tag.split("=", 1)[1]


def _versions_lines(env: dict[str, str], name: str) -> list[str]:
    shown = subprocess.run(
        [*MODELS_CLI, "versions", name], capture_output=True, text=True, env=env, cwd=ROOT
    )
    return shown.stdout.splitlines()


def test_fit_widths_cuts_columns_in_order_down_to_their_floors():
    from aiaas.registry.cli_output import fit_widths

    order = [(3, 8), (2, 5)]
    assert fit_widths([7, 16, 40, 30], order, total=93) == [7, 16, 40, 30]
    assert fit_widths([7, 16, 40, 30], order, total=80) == [7, 16, 40, 17]
    assert fit_widths([7, 16, 40, 30], order, total=60) == [7, 16, 29, 8]
    assert fit_widths([7, 16, 40, 30], order, total=10) == [7, 16, 5, 5]
