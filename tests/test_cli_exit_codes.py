"""One exit-code table for every command (aiaas/exit_codes.py), as a user meets it:
a real subprocess per subcommand, one `error:` line, the table's code.

1 failed, 2 bad input, 3 not found, 4 unavailable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ports import free_port

from aiaas.exit_codes import ExitCode

ROOT = Path(__file__).resolve().parents[1]
#: A PostgreSQL URL where nothing listens: the registry cannot be reached.
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:{port}/none"


def aiaas(*args: object, cwd: Path = ROOT, env: dict[str, str] | None = None):
    environment = {**os.environ, "NO_COLOR": "1"}
    environment.pop("AIAAS_REGISTRY_URI", None)
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=environment, timeout=240,
    )  # fmt: skip


def error_line(result: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    """The one line a failed command prints, after checking its exit code."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert "Traceback" not in result.stderr
    return errors[0]


def unreachable_registry() -> str:
    return UNREACHABLE.format(port=free_port())


def test_the_table_is_one_for_every_command():
    assert [(code.name, int(code)) for code in ExitCode] == [
        ("OK", 0), ("FAILED", 1), ("BAD_INPUT", 2), ("NOT_FOUND", 3), ("UNAVAILABLE", 4),
        ("INTERRUPTED", 130),
    ]  # fmt: skip


def test_serve_a_missing_repository_is_not_found(tmp_path):
    result = aiaas("serve", "--model-repository", tmp_path / "nope", "--http-port", free_port())
    assert "nope is not a directory" in error_line(result, ExitCode.NOT_FOUND)


def test_models_unknown_is_not_found_and_an_unreachable_registry_unavailable(tmp_path):
    env = {"AIAAS_REGISTRY_URI": f"sqlite:///{tmp_path / 'registry.db'}"}
    missing = aiaas("models", "show", "models:/nope/1", env=env)
    assert "nothing has been registered there yet" in error_line(missing, ExitCode.NOT_FOUND)
    down = aiaas("models", "list", "--registry-uri", unreachable_registry())
    assert "cannot open registry" in error_line(down, ExitCode.UNAVAILABLE)


def test_export_register_to_an_unreachable_registry_is_unavailable_as_in_models(tmp_path):
    result = aiaas(
        "export", "aiaas.compress.examples:digits_mlp", "--example-shape", "x=1x64",
        "--out", tmp_path / "repository", "--register", "m", "--registry", unreachable_registry(),
    )  # fmt: skip
    assert "cannot open registry" in error_line(result, ExitCode.UNAVAILABLE)


def test_compress_a_missing_model_file_is_bad_input(tmp_path):
    result = aiaas(
        "compress", tmp_path / "missing.onnx", "--eval", tmp_path / "eval.npz",
        "--out", tmp_path / "out", "--quantize", "dynamic",
    )  # fmt: skip
    assert "missing.onnx does not exist" in error_line(result, ExitCode.BAD_INPUT)
    assert not (tmp_path / "out").exists()


def test_train_a_missing_spec_is_bad_input(tmp_path):
    result = aiaas("train", tmp_path / "nope.toml", cwd=tmp_path)
    assert (
        error_line(result, ExitCode.BAD_INPUT)
        == f"error: SPEC {tmp_path / 'nope.toml'} does not exist"
    )


def test_federated_a_missing_spec_is_bad_input(tmp_path):
    result = aiaas("federated", "simulate", tmp_path / "nope.toml", cwd=tmp_path)
    assert "nope.toml does not exist" in error_line(result, ExitCode.BAD_INPUT)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_a_model_the_registry_lacks_is_not_found_with_or_without_workers(tmp_path, workers):
    """With --workers the engine process finds it and tells its supervisor: the same kind
    of error comes back, so the command says and exits what one process does."""
    result = aiaas(
        "serve", "--workers", workers, "--model", "models:/nope/1",
        "--registry-uri", f"sqlite:///{tmp_path / 'registry.db'}",
        "--http-port", free_port(), "--grpc-port", "0",
    )  # fmt: skip
    line = error_line(result, ExitCode.NOT_FOUND)
    assert line == "error: --model models:/nope/1: model 'nope' not found"


def test_federated_a_client_that_cannot_reach_its_server_is_unavailable(tmp_path):
    data = tmp_path / "client3.npz"
    np.savez(data, x=np.zeros((8, 64), np.float32), y=np.zeros(8, np.int64))
    result = aiaas(
        "federated", "client", ROOT / "examples/train/digits.toml", "--insecure",
        "--server", f"127.0.0.1:{free_port()}", "--data", data, "--retries", "1", "--max-wait", "2",
    )  # fmt: skip
    assert "cannot reach the Flower server" in error_line(result, ExitCode.UNAVAILABLE)
