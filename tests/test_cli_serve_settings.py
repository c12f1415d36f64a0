"""`aiaas serve`'s settings, declared once in ServerSettings, as a container sets them:
flags beat AIAAS_* environment variables, which beat the defaults, on a real server.
A bad value or a port in use is one line, before any "startup complete", and no
process is left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import models
import pytest
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without AIAAS_* settings, plus the test's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIAAS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", OMP_NUM_THREADS="1", **settings)
    return env


def serve_command(*flags: object) -> list[str]:
    return [sys.executable, "-m", "aiaas.cli", "serve", *map(str, flags)]


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "first")
    models.save(models.add_sub(), repo, "second")
    return repo


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """serve(port, env, *flags) -> (base URL, log path): a server that answers on `port`."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int, env: dict[str, str], *flags: object) -> tuple[str, Path]:
        log = tmp_path / f"server-{len(started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                serve_command(*flags), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                    return url, log
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"no server on port {port}:\n{log.read_text()}")

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def control_mode(url: str) -> str:
    """Explicit mode loads nothing at start and takes load requests; none loads all."""
    ready = httpx.get(f"{url}/v2/models/first/ready").status_code == 200
    loads = httpx.post(f"{url}/v2/repository/models/first/load").status_code == 200
    return {(False, True): "explicit", (True, False): "none"}[(ready, loads)]


def test_environment_alone_sets_port_grpc_and_control_mode(serve, repository):
    port = free_port()
    env = clean_env(
        AIAAS_HTTP_PORT=str(port), AIAAS_GRPC_PORT="0", AIAAS_MODEL_CONTROL_MODE="explicit"
    )
    url, log = serve(port, env, "--model-repository", repository)
    assert control_mode(url) == "explicit"
    assert "gRPC inference service listening" not in log.read_text()


def test_a_list_in_the_environment_is_comma_separated(serve, repository):
    port = free_port()
    env = clean_env(
        AIAAS_HTTP_PORT=str(port), AIAAS_GRPC_PORT="0", AIAAS_MODEL_CONTROL_MODE="explicit",
        AIAAS_LOAD_MODEL="first, second",
    )  # fmt: skip
    url, _ = serve(port, env, "--model-repository", repository)
    for name in ("first", "second"):
        assert httpx.get(f"{url}/v2/models/{name}/ready").status_code == 200


def test_flags_beat_the_environment(serve, repository):
    env_port, flag_port, grpc_port = free_port(), free_port(), free_port()
    env = clean_env(
        AIAAS_HTTP_PORT=str(env_port), AIAAS_GRPC_PORT="0", AIAAS_MODEL_CONTROL_MODE="explicit"
    )
    url, log = serve(
        flag_port, env, "--model-repository", repository, "--http-port", flag_port,
        "--grpc-port", grpc_port, "--model-control-mode", "none",
    )  # fmt: skip
    assert control_mode(url) == "none"
    assert f"gRPC inference service listening on 127.0.0.1:{grpc_port}" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{env_port}/v2/health/live")


def test_a_false_flag_beats_a_true_environment_variable(serve, repository):
    port = free_port()
    env = clean_env(AIAAS_STRICT_READINESS="true", AIAAS_GRPC_PORT="0")
    repository.joinpath("broken", "1").mkdir(parents=True)  # a model that never loads
    repository.joinpath("broken", "1", "model.onnx").write_bytes(b"not onnx")
    url, _ = serve(
        port, env, "--model-repository", repository, "--http-port", port, "--no-strict-readiness"
    )
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_defaults_apply_without_flags_or_environment(serve, repository):
    port = free_port()
    grpc_port = free_port()
    url, log = serve(
        port, clean_env(), "--model-repository", repository, "--http-port", port,
        "--grpc-port", grpc_port,
    )  # fmt: skip
    assert control_mode(url) == "none"
    assert f"gRPC inference service listening on 127.0.0.1:{grpc_port}" in log.read_text()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"AIAAS_MODEL_CONTROL_MODE": "bogus"},
            "error: AIAAS_MODEL_CONTROL_MODE: Input should be 'none', 'poll' or 'explicit'"
            " (got 'bogus')",
        ),
        (
            {"AIAAS_HTTP_PORT": "70000"},
            "error: AIAAS_HTTP_PORT: Input should be less than or equal to 65535 (got '70000')",
        ),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_it_and_exit_2(repository, env, message):
    result = subprocess.run(
        serve_command("--model-repository", repository), env=clean_env(**env),
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", "")


def listening(port: int) -> socket.socket:
    """A port someone else holds."""
    return socket.create_server(("127.0.0.1", port))


def assert_port_free(port: int) -> None:
    listening(port).close()


@pytest.mark.parametrize("taken", ["HTTP", "gRPC"])
def test_a_port_in_use_is_one_line_before_startup_and_exit_4(repository, taken):
    http_port, grpc_port = free_port(), free_port()
    held = listening(http_port if taken == "HTTP" else grpc_port)
    try:
        result = subprocess.run(
            serve_command(
                "--model-repository", repository, "--http-port", http_port,
                "--grpc-port", grpc_port,
            ),
            env=clean_env(), capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
    finally:
        held.close()
    address = f"127.0.0.1:{http_port if taken == 'HTTP' else grpc_port}"
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"error: cannot listen for {taken} on {address}: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "startup complete" not in result.stdout + result.stderr
    assert_port_free(http_port)  # the process that returned left nothing listening
    assert_port_free(grpc_port)


def test_the_readme_documents_every_serve_setting():
    from aiaas.serve.settings import ServerSettings

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### `aiaas serve` flags")[1].split("\n### ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    documented = {row.split("`")[1].split()[0]: row.split("`")[3] for row in rows}
    assert documented == {
        "--" + name.replace("_", "-"): f"AIAAS_{name.upper()}"
        for name in ServerSettings.model_fields
    }
