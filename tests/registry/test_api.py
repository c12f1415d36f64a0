"""The Python API other packages use, and the package's boundaries."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import ROOT

from aiaas.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from aiaas.registry import Registry


def test_a_duplicate_model_name_is_already_exists_409(registry):
    registry.create_model("mlp", description="d", tags={"k": "v"})
    with pytest.raises(AlreadyExists, match="already exists") as caught:
        registry.create_model("mlp")
    assert caught.value.http_status == 409
    assert registry.get_model("mlp").tags == {"k": "v"}


def test_register_creates_the_model_and_numbers_versions_per_model(registry, onnx_file):
    assert registry.register("a", onnx_file("a1"), description="first").version == 1
    assert registry.register("b", onnx_file("b1")).version == 1
    assert registry.register("a", onnx_file("a2")).version == 2
    assert registry.get_model("a").description == "first"
    assert registry.resolve("models:/a/latest").version == 2


def test_identical_files_are_stored_once(registry, onnx_file, artifact_root):
    first = registry.register("a", onnx_file("same"))
    second = registry.register("b", onnx_file("same"))
    assert first.sha256 == second.sha256
    assert len(list(Path(artifact_root).glob("blobs/sha256/*/*"))) == 1


def test_a_registry_error_is_typed(registry, onnx_file):
    registry.register("m", onnx_file("m"))
    registry.set_alias("m", "production", 1)
    with pytest.raises(FailedPrecondition):
        registry.delete("models:/m/1")
    with pytest.raises(NotFound):
        registry.resolve("models:/m@canary")
    with pytest.raises(InvalidArgument):
        registry.register("m", onnx_file("m"), params={"x": float("nan")})
    with pytest.raises(InvalidArgument):
        registry.set_alias("m", "9lives", 1)


def test_the_default_registry_is_a_sqlite_file_under_home(tmp_path, monkeypatch, onnx_file):
    for name in ("AIAAS_REGISTRY_URI", "AIAAS_ARTIFACT_ROOT", "AIAAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with Registry.open() as registry:
        version = registry.register("m", onnx_file("m"))
    database = tmp_path / "home" / ".aiaas" / "registry.db"
    assert database.is_file()
    blob = tmp_path / "home" / ".aiaas" / "artifacts" / "blobs" / "sha256"
    assert (blob / version.files[0].sha256[:2] / version.files[0].sha256).is_file()
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_unsupported_or_unreachable_databases_are_clear_errors(tmp_path):
    with pytest.raises(InvalidArgument, match="unsupported registry URI"):
        Registry.open("mysql://x/y")
    with pytest.raises(InvalidArgument, match="in-memory"):
        Registry.open("sqlite://")
    with pytest.raises(Unavailable, match="cannot open registry"):
        Registry.open("postgresql://nobody@127.0.0.1:1/none", str(tmp_path))


def test_the_registry_imports_none_of_the_other_packages():
    code = (
        "import sys\n"
        "import aiaas.registry.cli\n"
        "assert 'sqlalchemy' not in sys.modules and 'onnx' not in sys.modules, 'cli is not lazy'\n"
        "import aiaas.registry.api, aiaas.registry.source, aiaas.registry.http\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch'\n"
        "       or m.startswith(('aiaas.serve', 'aiaas.train', 'aiaas.compress', 'aiaas.cli'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
