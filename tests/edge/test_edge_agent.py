"""`aiaas edge agent`: real agent processes following an alias of a real registry server
over HTTP, serving V2 on their own port, refusing what fails a check, surviving the
registry going away and being killed mid-download."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

import httpx
import pytest
from edge_agent_support import (
    ROOT,
    AgentProcess,
    RegistryServer,
    add_model,
    bundle,
    env,
    failing_model,
    wait_until,
)
from typer.testing import CliRunner

from aiaas.edge import manifest
from aiaas.registry import Registry


@pytest.fixture
def registry_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def artifact_root(tmp_path):
    return str(tmp_path / "artifacts")


@pytest.fixture
def registry(registry_uri, artifact_root):
    with Registry.open(registry_uri, artifact_root) as opened:
        yield opened


@pytest.fixture
def server(registry_uri, artifact_root, tmp_path):
    started = RegistryServer(registry_uri, artifact_root, tmp_path)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def agents(tmp_path):
    """agents(registry_url, name, *flags, **options) -> AgentProcess, stopped at teardown."""
    started: list[AgentProcess] = []

    def start(url: str, name: str, *flags: str, **options) -> AgentProcess:
        agent = AgentProcess(url, tmp_path / "devices" / name, *flags, **options)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def publish(registry, tmp_path):
    """publish(value, folder=None) -> the version number; a model adding `value`."""

    def make(value: float, folder=None, alias: bool = True) -> int:
        path = folder or add_model(tmp_path / "sources" / f"m{value}.onnx", value)
        version = registry.register("mlp", path).version
        if alias:
            registry.set_alias("mlp", "production", version)
        return version

    return make


def _reported(server: RegistryServer) -> dict[str, dict]:
    devices = httpx.get(f"{server.url}/v2/registry/devices", params={"model": "mlp"}).json()
    return {d["device_id"]: d for d in devices["devices"]}


def test_two_agents_follow_two_alias_moves_and_report_their_versions(
    server, agents, publish, registry, registry_uri, artifact_root
):
    assert publish(1) == 1
    first = agents(server.url, "a", "--device-id", "cam-a")
    second = agents(server.url, "b", "--device-id", "cam-b")
    for version in (1, 2, 3):
        if version > 1:
            assert publish(version) == version
        first.wait_serving(version)
        second.wait_serving(version)
        wait_until(
            lambda v=version: (
                {d["version"] for d in _reported(server).values()} == {v}
                and len(_reported(server)) == 2
            ),
            f"both devices reporting version {version}",
        )
    reported = _reported(server)
    assert reported["cam-a"]["state"] == "serving"
    assert reported["cam-a"]["sha256"] == first.state()["sha256"]
    # Polls of an alias that has not moved were answered 304.
    assert first.state()["counts"]["not_modified"] > 0
    assert first.state()["counts"]["installed"] == 3
    # Each swap is a rename: `current` points at a complete version folder.
    current = (first.directory / "current").resolve()
    assert current.name == "3"
    assert sorted(p.name for p in (first.directory / "versions").iterdir()) == ["2", "3"]
    from aiaas.registry.cli import models_app

    env = {"AIAAS_REGISTRY_URI": registry_uri, "AIAAS_ARTIFACT_ROOT": artifact_root}
    shown = CliRunner(env=env).invoke(models_app, ["show", "models:/mlp"])
    assert shown.exit_code == 0, shown.output
    assert "cam-a" in shown.stdout
    assert "cam-b" in shown.stdout
    # A rollback to the version kept on disk goes live without a download.
    registry.set_alias("mlp", "production", 2)
    first.wait_serving(2)
    assert first.logs().count("now names models:/mlp/2") == 2
    assert (first.directory / "current").resolve().name == "2"
    assert first.stop() == 0  # SIGTERM is a clean stop
    assert second.stop(signal.SIGINT) == 0  # and so is Ctrl-C
    assert "Traceback" not in first.logs() + second.logs()


def test_a_version_failing_any_check_is_refused_reported_and_the_old_one_keeps_serving(
    server, agents, publish, tmp_path
):
    keys = manifest.keygen(tmp_path / "keys")
    other = manifest.keygen(tmp_path / "other-keys")
    publish(1, bundle(tmp_path / "b1", 1, keys.private))
    agent = agents(server.url, "signed", "--device-id", "cam-s", "--public-key", str(keys.public))
    agent.wait_serving(1)

    tampered = bundle(tmp_path / "b3", 3, keys.private)
    add_model(tampered / "model.onnx", 33)  # changed after signing
    refusals = [
        (bundle(tmp_path / "b2", 2, None), "not signed"),
        (tampered, "does not match its sha256"),
        (bundle(tmp_path / "b4", 4, other.private), "signature does not match"),
        (
            bundle(tmp_path / "b5", 5, keys.private, fields={"min_onnxruntime": "99.0"}),
            "needs onnxruntime >= 99.0",
        ),
        (
            bundle(tmp_path / "b6", 6, keys.private, model=failing_model(tmp_path / "f.onnx")),
            "the sample inference failed",
        ),
    ]
    for folder, reason in refusals:
        version = publish(0, folder)

        def refused(v=version) -> dict | None:
            state = agent.state()
            return state if f"mlp/{v}" in state["refused"] else None

        state = wait_until(refused, f"version {version} refused")
        assert reason in state["last_error"], state
        assert f"refused models:/mlp/{version}" in agent.logs()
        assert agent.answer() == (1, 1.0)
        assert not list(agent.directory.glob("staging-*"))
        assert not (agent.directory / "versions" / str(version)).exists()
        wait_until(
            lambda v=version: (
                f"models:/mlp/{v}" in (_reported(server)["cam-s"]["last_error"] or "")
            ),
            "the refusal reported",
        )
        assert _reported(server)["cam-s"]["version"] == 1
    good = publish(0, bundle(tmp_path / "b7", 7, keys.private))
    agent.wait_serving(good)


def test_the_agent_keeps_serving_while_the_registry_is_down_and_catches_up(server, agents, publish):
    publish(1)
    agent = agents(server.url, "offline", "--device-id", "cam-o")
    agent.wait_serving(1)
    server.stop()
    wait_until(lambda: agent.state()["counts"]["unreachable"] >= 2, "polls failing")
    assert "unreachable" in agent.state()["last_error"]
    assert agent.answer() == (1, 1.0)
    publish(2)  # moved while the device cannot see it
    server.start()
    agent.wait_serving(2)
    wait_until(lambda: _reported(server).get("cam-o", {}).get("version") == 2, "report")
    # An outage with nothing moved: the error it left is cleared once polls get through.
    server.stop()
    wait_until(lambda: agent.state()["last_error"], "the outage noticed")
    server.start()
    wait_until(lambda: agent.state()["last_error"] is None, "the outage over")
    assert agent.answer() == (2, 2.0)


def test_a_kill_mid_download_leaves_the_old_version_serving_and_a_restart_finishes_it(
    server, agents, publish, tmp_path
):
    publish(1)
    directory_flags = ("--device-id", "cam-k")
    agent = agents(server.url, "killed", *directory_flags)
    agent.wait_serving(1)
    assert agent.stop() == 0
    publish(2, bundle(tmp_path / "big", 2, None, extra_bytes=8 * 1024 * 1024))
    marker = tmp_path / "paused"
    pause = {
        "AIAAS_REGISTRY_TEST_PAUSE_AT": "edge-download-chunk",
        "AIAAS_REGISTRY_TEST_PAUSE_FILE": str(marker),
    }
    paused = agents(server.url, "killed", *directory_flags, extra_env=pause)
    wait_until(marker.exists, "the download to pause after its first chunk")
    assert paused.answer() == (1, 1.0)
    paused.stop(signal.SIGKILL)
    parts = list((tmp_path / "devices" / "killed").glob("staging-2/2/*.part"))
    assert parts, "the partial download is kept to resume"
    assert (tmp_path / "devices" / "killed" / "current").resolve().name == "1"
    restarted = agents(server.url, "killed", *directory_flags)
    restarted.wait_serving(2)
    assert "resuming" in restarted.logs()
    assert not list((tmp_path / "devices" / "killed").glob("staging-*"))


def _limit_file_size() -> None:
    """What a full disk looks like to the agent: writes past 1 MiB fail (EFBIG)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))


def test_a_disk_that_fills_during_the_download_refuses_the_version_cleanly(
    server, agents, publish, tmp_path
):
    publish(1)
    agent = agents(server.url, "full", "--device-id", "cam-f", preexec_fn=_limit_file_size)
    agent.wait_serving(1)
    version = publish(2, bundle(tmp_path / "big", 2, None, extra_bytes=4 * 1024 * 1024))
    state = wait_until(
        lambda: agent.state() if f"mlp/{version}" in agent.state()["refused"] else None,
        "the version refused",
    )
    assert "disk full" in state["last_error"]
    assert agent.answer() == (1, 1.0)
    assert not list(agent.directory.glob("staging-*"))


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--public-key", "/nonexistent/edge.pub"], 3, "does not exist"),
        (["--model", "models:/mlp"], 2, "add /VERSION or @ALIAS"),
        (["--model", "models:/mlp/latest"], 2, "follow an alias"),
        (["--model", "nonsense"], 2, "models:/"),
        (["--device-id", "bad id!"], 2, "device id"),
    ],
)
def test_bad_flags_are_one_line_and_an_exit_code(tmp_path, flags, code, message):
    command = [
        sys.executable, "-m", "aiaas.cli", "edge", "agent", "--registry-url",
        "http://127.0.0.1:9", "--model", "models:/mlp@production", "--dir", str(tmp_path / "d"),
        *flags,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env(), timeout=60)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_a_registry_with_an_admin_token_takes_reports_only_with_it(
    registry_uri, artifact_root, tmp_path, agents, publish
):
    publish(1)
    server = RegistryServer(registry_uri, artifact_root, tmp_path)
    server.args += ["--admin-token", "s3cret"]
    server.start()
    try:
        without = agents(server.url, "no-token", "--device-id", "cam-n")
        with_token = agents(server.url, "token", "--device-id", "cam-t", "--token", "s3cret")
        without.wait_serving(1)  # reads need no token
        with_token.wait_serving(1)
        wait_until(lambda: "cam-t" in _reported(server), "the report with the token")
        wait_until(lambda: "refuses this device's reports" in without.logs(), "the warning")
        assert without.logs().count("refuses this device's reports") == 1
        assert "cam-n" not in _reported(server)
    finally:
        server.stop()
