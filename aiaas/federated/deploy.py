"""Real Flower processes: a SuperLink for `aiaas federated server`, a SuperNode per client.

The server writes a Flower App (a pyproject.toml naming `aiaas.federated.deploy_app`)
into its run directory, starts `flower-superlink` with the Fleet API on the
requested address, submits the app with `flwr run` to the SuperLink's Control
API (on a private 127.0.0.1 port), and waits for the ServerApp to report that
it is done. A client is `flower-supernode` pointed at the SuperLink with its own
data file in its node config. Each Flower process runs under a small guardian
that the kernel signals when the aiaas command dies (PR_SET_PDEATHSIG): killing
`aiaas federated client` stops its SuperNode gracefully (it tells the SuperLink
it is leaving, so the round fails over at once) and kills it after 10 s. A client
whose server has gone (its last round is done) ends its SuperNode within seconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiaas.federated.deploy_app import JOB_KEY, SETTINGS_KEY, STATUS_FILE
from aiaas.train.config import ConfigError

_PR_SET_PDEATHSIG = 1
CONNECTED_MARKERS = ("Connection successful", "SuperNode ID")
SUCCESS_MARKERS = ("Received successfully", "Sent successfully")
RETRY_MARKER = "Connection attempt failed"


class DeploymentFailed(RuntimeError):
    """A Flower process exited or the run failed; the message says which and why."""


@dataclass(frozen=True)
class Certificates:
    """Flower's file names: ca.crt always; server.pem and server.key on the server."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


def certificates(directory: Path, *, server: bool) -> Certificates:
    directory = directory.resolve()  # Flower's connection file wants absolute paths
    names = ("ca.crt", "server.pem", "server.key") if server else ("ca.crt",)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise ConfigError("--certificates", f"{directory} lacks {', '.join(missing)}")
    if server:
        return Certificates(
            directory / "ca.crt", directory / "server.pem", directory / "server.key"
        )
    return Certificates(directory / "ca.crt")


def check_address(text: str, flag: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(flag, f"{text!r} is not HOST:PORT")
    return text


def executable(name: str) -> str:
    """Flower's console scripts, from the environment this Python runs in."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise DeploymentFailed(f"{name} not found; is flwr installed?")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs a Flower process and outlives it by at most a grace period: on SIGTERM (sent by
# the kernel when the aiaas command dies, see _die_with_parent) it asks the child to
# stop gracefully - a SuperNode then tells the SuperLink it is leaving, so the round
# fails fast - and kills it if it does not stop within 10 s (SIGALRM). SIGUSR1 kills the
# child at once: sent when its SuperLink is gone, there is nobody left to say goodbye to.
# The handlers only send signals; the one wait is the main line's (a wait inside a
# handler would deadlock on the wait the handler interrupted).
_GUARDIAN = """
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
ending = {}
def stop(*_):
    ending["code"] = 143
    child.terminate()
    signal.alarm(10)
def leave(*_):
    ending.setdefault("code", 0)
    child.kill()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, leave)
signal.signal(signal.SIGALRM, lambda *_: child.kill())
code = child.wait()
sys.exit(ending.get("code", code))
"""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _env(flwr_home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", _GUARDIAN, *command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
            start_new_session=False,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_app(app_dir: Path, run_config: dict[str, str], *, secagg: bool = False) -> None:
    """A minimal Flower App: Flower builds its bundle from this folder for `flwr run`."""
    app_dir.mkdir(parents=True, exist_ok=True)
    client = "secagg_client_app" if secagg else "client_app"
    config = "\n".join(f"{key} = {json.dumps(value)}" for key, value in run_config.items())
    (app_dir / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "aiaasfederated"\nversion = "1.0.0"\n'
        'description = "aiaas federated run"\nlicense = "Apache-2.0"\n'
        'dependencies = ["flwr>=1.20"]\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["."]\n\n'
        '[tool.flwr.app]\npublisher = "aiaas"\n\n'
        "[tool.flwr.app.components]\n"
        'serverapp = "aiaas_federated_app:server_app"\n'
        f'clientapp = "aiaas_federated_app:{client}"\n\n'
        f"[tool.flwr.app.config]\n{config}\n"
    )
    (app_dir / "aiaas_federated_app.py").write_text(
        '"""Entry points for Flower: the apps live in aiaas.federated.deploy_app."""\n\n'
        f"from aiaas.federated.deploy_app import {client}, server_app\n\n"
        f'__all__ = ["{client}", "server_app"]\n'
    )


@dataclass(kw_only=True)
class ServerProcessSettings:
    address: str
    run_dir: Path
    settings: dict[str, Any]
    job: dict[str, Any]
    tls: Certificates | None
    on_round: Callable[[dict[str, Any]], None]
    secagg: bool = False


def serve(settings: ServerProcessSettings) -> dict[str, Any]:
    """SuperLink up, app submitted, wait for the ServerApp's status; SuperLink down."""
    run_dir = settings.run_dir.resolve()
    flwr_home, app_dir = run_dir / "flwr-home", run_dir / "flower-app"
    flwr_home.mkdir(parents=True, exist_ok=True)
    (run_dir / STATUS_FILE).unlink(missing_ok=True)
    settings_file = run_dir / "server-settings.json"
    settings_file.write_text(json.dumps(settings.settings, indent=2))
    write_app(
        app_dir,
        {SETTINGS_KEY: str(settings_file), JOB_KEY: json.dumps(settings.job)},
        secagg=settings.secagg,
    )
    control = f"127.0.0.1:{_free_port()}"
    tls = _superlink_tls(settings.tls)
    command = [
        executable("flower-superlink"),
        *tls,
        "--disable-runtime-dependency-installation",
        "--fleet-api-address",
        settings.address,
        "--serverappio-api-address",
        f"127.0.0.1:{_free_port()}",
        "--control-api-address",
        control,
    ]
    env = _env(flwr_home)
    superlink = start(command, run_dir / "superlink.log", env)
    try:
        _wait_port(control, superlink, run_dir / "superlink.log")
        _write_connection(flwr_home, control, settings.tls)
        submitted = subprocess.run(
            [executable("flwr"), "run", str(app_dir), "local"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if submitted.returncode != 0:
            raise DeploymentFailed(
                f"flwr run failed: {_last_line(submitted.stdout + submitted.stderr)}"
            )
        return _wait_for_status(run_dir, superlink, settings.on_round)
    finally:
        stop(superlink)


def _superlink_tls(tls: Certificates | None) -> list[str]:
    if tls is None:
        return ["--insecure"]
    return [
        "--ssl-ca-certfile",
        str(tls.ca),
        "--ssl-certfile",
        str(tls.cert),
        "--ssl-keyfile",
        str(tls.key),
    ]


def _write_connection(flwr_home: Path, control: str, tls: Certificates | None) -> None:
    security = (
        "insecure = true" if tls is None else f"root-certificates = {json.dumps(str(tls.ca))}"
    )
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{control}"\n{security}\n'
    )


def _wait_port(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentFailed(f"flower-superlink exited: {_last_line(log.read_text())}")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise DeploymentFailed("flower-superlink did not open its Control API within 60 s")


def _wait_for_status(
    run_dir: Path, superlink: subprocess.Popen[bytes], on_round: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    status, rounds, reported = run_dir / STATUS_FILE, run_dir / "rounds.jsonl", 0
    while True:
        lines = rounds.read_text().splitlines() if rounds.is_file() else []
        for line in lines[reported:]:
            on_round(json.loads(line))
        reported = len(lines)
        if status.is_file():
            outcome: dict[str, Any] = json.loads(status.read_text())
            if outcome["state"] == "failed":
                raise DeploymentFailed(outcome["error"])
            return outcome
        if superlink.poll() is not None:
            log = (run_dir / "superlink.log").read_text()
            raise DeploymentFailed(f"flower-superlink exited: {_last_line(log)}")
        time.sleep(0.3)


def _last_line(text: str) -> str:
    """The last message in Flower's output, without the box rich draws around errors."""
    lines = [line.strip(" │╭╮╰╯─") for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Error")]
    return " ".join(lines[-3:]) if lines else "(no output)"


@dataclass(kw_only=True)
class ClientProcessSettings:
    server: str
    data_path: Path
    partition_id: int
    root_certificates: Path | None
    retries: int
    max_wait_s: float
    log: Path


def join(settings: ClientProcessSettings) -> tuple[bool, int]:
    """Run a SuperNode until it exits; (whether it ever reached the SuperLink, exit code)."""
    security = (
        ["--insecure"]
        if settings.root_certificates is None
        else ["--root-certificates", str(settings.root_certificates)]
    )
    node_config = f"data-path={json.dumps(str(settings.data_path.resolve()))} " + (
        f"partition-id={settings.partition_id}"
    )
    command = [
        executable("flower-supernode"),
        *security,
        "--superlink",
        settings.server,
        "--clientappio-api-address",
        f"127.0.0.1:{_free_port()}",
        "--node-config",
        node_config,
        "--max-retries",
        str(settings.retries),
        "--max-wait-time",
        str(settings.max_wait_s),
    ]
    settings.log.parent.mkdir(parents=True, exist_ok=True)
    offset = settings.log.stat().st_size if settings.log.is_file() else 0
    # Flower unpacks the app bundle under FLWR_HOME: keep it beside this client's data.
    flwr_home = settings.log.parent / f".flwr-{settings.data_path.stem}"
    supernode = start(command, settings.log, _env(flwr_home))
    watch = SuperLinkWatch(settings.log, offset, settings.server)
    try:
        while (code := supernode.poll()) is None:
            if watch.superlink_gone():
                supernode.send_signal(signal.SIGUSR1)
                code = supernode.wait()
                break
            time.sleep(0.5)
    finally:
        stop(supernode)
    watch.superlink_gone()  # reads what the SuperNode wrote last
    return watch.connected, code


class SuperLinkWatch:
    """Tells when the SuperLink a SuperNode was connected to has gone for good.

    A SuperNode is a daemon that outlives runs: when its SuperLink stops (the server's
    last round is done, or it stopped to be resumed later) it retries for up to
    `--max-wait` seconds with backoff, then retries its goodbye; two minutes in all.
    Here the node had connected, its last attempt failed, and the SuperLink's port has
    refused connections for `GONE_AFTER_S`: no process listens there any more. A server
    that does not answer at all (a network problem) is left to Flower's retries.
    """

    GONE_AFTER_S = 3.0

    def __init__(self, log: Path, offset: int, server: str) -> None:
        self.log, self.position, self.server = log, offset, server
        self.connected = False
        self.failing = False
        self.refused_since: float | None = None

    def superlink_gone(self) -> bool:
        self._read()
        if not (self.connected and self.failing) or not _refuses(self.server):
            self.refused_since = None
            return False
        now = time.monotonic()
        self.refused_since = self.refused_since or now
        return now - self.refused_since >= self.GONE_AFTER_S

    def _read(self) -> None:
        with open(self.log, "rb") as handle:
            handle.seek(self.position)
            chunk = handle.read().decode(errors="replace")
            self.position = handle.tell()
        self.connected = self.connected or any(marker in chunk for marker in CONNECTED_MARKERS)
        failed = chunk.rfind(RETRY_MARKER)
        succeeded = max(chunk.rfind(marker) for marker in (*CONNECTED_MARKERS, *SUCCESS_MARKERS))
        if failed >= 0 or succeeded >= 0:
            self.failing = failed > succeeded


def _refuses(address: str) -> bool:
    """True when HOST:PORT answers that nothing listens there (not for a timeout)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
