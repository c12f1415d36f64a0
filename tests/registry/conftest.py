"""Registry fixtures: one throwaway PostgreSQL cluster per test session, and a fresh
registry (SQLite file or PostgreSQL database) per test, parametrized over both.

With CI=true a missing PostgreSQL fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import models
import onnx
import pytest
from pg_cluster import INSTALL_HINT, PostgresCluster, find_bin
from ports import free_port
from registry_support import Cli

from aiaas.registry import Registry

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bin_dir = find_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    cluster = PostgresCluster(bin_dir, free_port())
    try:
        cluster.start()
    except subprocess.CalledProcessError as error:
        cluster.stop()
        pytest.fail(f"PostgreSQL did not start: {error.stderr}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registry_uri(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def artifact_root(tmp_path: Path) -> str:
    return str(tmp_path / "artifacts")


@pytest.fixture
def registry(registry_uri: str, artifact_root: str) -> Iterator[Registry]:
    with Registry.open(registry_uri, artifact_root) as opened:
        yield opened


@pytest.fixture
def onnx_file(tmp_path: Path) -> Callable[..., Path]:
    """onnx_file(name="m", datatype="FP32") -> a small real ONNX file; distinct per name."""

    def make(name: str = "model", datatype: str = "FP32", width: int = 4) -> Path:
        path = tmp_path / "sources" / f"{name}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        model = models.identity(datatype, ("batch", width))
        model.doc_string = name  # distinct bytes, so distinct blobs
        onnx.save(model, path)
        return path

    return make


@pytest.fixture
def cli(registry_uri: str, artifact_root: str) -> Cli:
    return Cli(registry_uri, artifact_root)
