"""What must hold whatever happens: a killed `register` leaves nothing half-made,
concurrent registrations get distinct consecutive numbers, a tampered artifact
never downloads."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from registry_support import MODELS_CLI, ROOT, subprocess_env

from aiaas.errors import FailedPrecondition
from aiaas.registry import Registry
from aiaas.registry.faults import PAUSE_AT, PAUSE_FILE, POINTS

WAIT_S = 120  # a bound on waiting for a condition, never a measurement
WORKERS, PER_WORKER = 8, 10


def _wait_for(condition, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _assert_consistent(registry: Registry, tmp_path: Path) -> None:
    """Every visible version downloads completely with verified hashes."""
    for model in registry.list_models():
        for version in registry.versions(model.name):
            dest = registry.download(
                version.uri, tmp_path / "check" / f"{model.name}-{version.version}"
            )
            assert sorted(p.name for p in dest.iterdir()) == [f.path for f in version.files]


@pytest.mark.parametrize("point", POINTS)
def test_register_killed_at_any_point_leaves_the_registry_consistent(
    registry, registry_uri, artifact_root, onnx_file, tmp_path, point
):
    registry.register("m", onnx_file("first"))
    marker = tmp_path / "paused"
    env = subprocess_env(registry_uri, artifact_root, **{PAUSE_AT: point, PAUSE_FILE: str(marker)})
    process = subprocess.Popen(
        [*MODELS_CLI, "register", "m", str(onnx_file("killed"))],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_for(marker.exists, f"register to pause at {point}", process)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL

    committed = point == "committed"
    assert [v.version for v in registry.versions("m")] == ([1, 2] if committed else [1])
    _assert_consistent(registry, tmp_path)
    after = registry.register("m", onnx_file("after"))
    assert after.version == (3 if committed else 2)
    assert registry.resolve("models:/m/latest").sha256 == after.sha256
    registry.gc(grace_s=0)
    assert not list(Path(artifact_root).glob("tmp/*"))
    _assert_consistent(registry, tmp_path / "after-gc")


@pytest.mark.slow
def test_concurrent_registers_get_consecutive_distinct_versions(
    registry_uri, artifact_root, onnx_file, tmp_path
):
    model = onnx_file("shared")
    sync = tmp_path / "sync"
    sync.mkdir()
    env = subprocess_env(registry_uri, artifact_root)
    worker = str(Path(__file__).with_name("register_worker.py"))
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                worker,
                registry_uri,
                artifact_root,
                str(model),
                str(i),
                str(PER_WORKER),
                str(sync),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(WORKERS)
    ]
    try:
        _wait_for(lambda: len(list(sync.glob("ready-*"))) == WORKERS, "every worker ready")
        (sync / "go").touch()
        for process in processes:
            _, stderr = process.communicate(timeout=WAIT_S * 2)
            assert process.returncode == 0, stderr.decode()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    with Registry.open(registry_uri, artifact_root) as registry:
        versions = registry.versions("shared")
    assert [v.version for v in versions] == list(range(1, WORKERS * PER_WORKER + 1))
    made = sorted((v.tags["worker"], v.tags["iteration"]) for v in versions)
    assert made == sorted((str(w), str(i)) for w in range(WORKERS) for i in range(PER_WORKER))


def test_a_tampered_artifact_fails_to_download(registry, onnx_file, artifact_root, tmp_path):
    version = registry.register("m", onnx_file("m"))
    blob = registry.artifacts.blob_path(version.files[0].sha256)
    data = Path(blob).read_bytes()
    Path(blob).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, other content
    with pytest.raises(FailedPrecondition, match="corrupt") as caught:
        registry.download("models:/m/1", tmp_path / "dl")
    assert version.files[0].sha256 in str(caught.value)
    assert not (tmp_path / "dl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dl")]


def test_a_truncated_or_missing_blob_fails_the_cli_download(registry, cli, onnx_file, tmp_path):
    version = registry.register("m", onnx_file("m"))
    blob = Path(registry.artifacts.blob_path(version.files[0].sha256))
    blob.write_bytes(blob.read_bytes()[:10])
    failed = cli("download", "models:/m/1", tmp_path / "dl", code=2)
    assert "is corrupt in the artifact store" in failed.stderr
    blob.unlink()
    failed = cli("download", "models:/m/1", tmp_path / "dl", code=2)
    assert "is missing from the artifact store" in failed.stderr
    assert not (tmp_path / "dl").exists()


def test_blobs_are_named_by_their_sha256(registry, onnx_file):
    source = onnx_file("m")
    version = registry.register("m", source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert version.files[0].sha256 == digest
    assert Path(registry.artifacts.blob_path(digest)).read_bytes() == source.read_bytes()
    manifest = f"{digest}  model.onnx\n".encode()
    assert version.sha256 == hashlib.sha256(manifest).hexdigest()
    assert os.path.getsize(registry.artifacts.blob_path(digest)) == version.size_bytes
