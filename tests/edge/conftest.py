"""Edge fixtures: a device-like Python (a fresh venv holding only onnxruntime, numpy and
tokenizers, never aiaas nor torch), model folders to bundle, and a key pair.

The venv is made with `python -m venv --without-pip`; the packages a device would install
are linked into its site-packages from this interpreter's, since tests never download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from edge_support import (
    DEVICE_PACKAGES,
    OPTIONAL_PACKAGES,
    DevicePython,
    aiaas,
    make_device_python,
    write_digits_repo,
)
from llm_fixtures import smollm2_version
from tiny_llama import write_tiny_llama

__all__ = ["smollm2_version"]


@pytest.fixture(scope="session")
def device(tmp_path_factory: pytest.TempPathFactory) -> DevicePython:
    """A fresh venv with onnxruntime, numpy and tokenizers only."""
    python = make_device_python(tmp_path_factory.mktemp("device") / "venv", DEVICE_PACKAGES)
    probe = python.run("-c", "import onnxruntime, numpy, tokenizers")
    assert probe.returncode == 0, probe.stderr
    for absent in ("aiaas", "torch", "cryptography", "jinja2"):
        assert python.run("-c", f"import {absent}").returncode != 0, f"{absent} is importable"
    return python


@pytest.fixture(scope="session")
def full_device(tmp_path_factory: pytest.TempPathFactory) -> DevicePython:
    """The device venv plus the optional packages: cryptography and jinja2."""
    folder = tmp_path_factory.mktemp("signing-device") / "venv"
    python = make_device_python(folder, DEVICE_PACKAGES + OPTIONAL_PACKAGES)
    probe = python.run("-c", "import cryptography.hazmat.primitives.asymmetric.ed25519, jinja2")
    assert probe.returncode == 0, probe.stderr
    return python


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("digits-repo")
    write_digits_repo(repo)
    return repo


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("tiny-repo")
    write_tiny_llama(repo, "tiny", 1, context_length=256)
    return repo


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aiaas.edge.manifest import keygen

    folder = tmp_path_factory.mktemp("keys")
    keygen(folder / "good")
    keygen(folder / "other")
    return folder


Bundler = Callable[..., Path]


@pytest.fixture
def bundle(tmp_path: Path) -> Bundler:
    """bundle(source, *flags, out=None) -> the bundle folder (the command must succeed)."""

    def make(source: str | Path, *flags: str | Path, out: Path | None = None) -> Path:
        target = out or tmp_path / f"bundle-{len(list(tmp_path.glob('bundle-*')))}"
        result = aiaas("edge", "bundle", source, "--out", target, *flags)
        assert result.returncode == 0, result.stderr
        return target

    return make
