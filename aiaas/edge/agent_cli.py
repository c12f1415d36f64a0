"""`aiaas edge agent`: the command; the integrator attaches `agent` to the `edge` group."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aiaas.exit_codes import ExitCode, fail, fail_with

if TYPE_CHECKING:
    from aiaas.edge.agent import Agent
    from aiaas.serve.settings import ServerSettings


def default_device_id(directory: Path) -> str:
    """The host name plus a digest of the folder: two agents on one host differ."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "device"
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:8]
    return f"{host}-{digest}"


def agent(
    registry_url: Annotated[
        str, typer.Option(help="The registry server, e.g. http://registry:8000.")
    ],
    model: Annotated[str, typer.Option(help="What to follow: models:/NAME@ALIAS (or /VERSION).")],
    directory: Annotated[
        Path, typer.Option("--dir", help="The agent's folder: downloads, versions, state.")
    ],
    public_key: Annotated[
        Path | None,
        typer.Option(help="Only serve bundles signed by this ed25519 key (aiaas edge keygen)."),
    ] = None,
    http_port: Annotated[int, typer.Option(min=0, max=65535, help="V2 over HTTP.")] = 8000,
    grpc_port: Annotated[
        int, typer.Option(min=0, max=65535, help="V2 over gRPC too (0, the default: off).")
    ] = 0,
    host: Annotated[str, typer.Option(help="Address the HTTP and gRPC ports listen on.")] = (
        "127.0.0.1"
    ),
    poll_secs: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 5.0,
    max_backoff_secs: Annotated[
        float, typer.Option(min=0.1, help="Longest wait between retries while offline.")
    ] = 60.0,
    device_id: Annotated[
        str | None, typer.Option(help="How this device reports itself (default: host + dir).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="AIAAS_ADMIN_TOKEN", help="Bearer token for device reports."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Follow a registry alias: download, verify, check and swap in each new version
    atomically, and serve it with the V2 protocol; keeps serving offline."""
    import logging

    from aiaas.edge.agent import Agent, AgentConfig
    from aiaas.edge.agent_server import settings_for
    from aiaas.errors import AiaasError
    from aiaas.registry.api import check_device_id
    from aiaas.registry.uri import parse_version_uri

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if public_key is not None and not public_key.is_file():
        raise fail(f"public key {public_key} does not exist", ExitCode.NOT_FOUND)
    try:
        uri = parse_version_uri(model)
        if uri.alias is None and uri.version is None:
            raise fail(
                f"--model {model}: follow an alias (@ALIAS) or a version", ExitCode.BAD_INPUT
            )
        config = AgentConfig(
            registry_url=registry_url,
            model_uri=model,
            directory=directory,
            device_id=check_device_id(device_id or default_device_id(directory)),
            public_key=public_key,
            token=token,
            poll_secs=poll_secs,
            max_backoff_secs=max_backoff_secs,
        )
        if public_key is not None:
            from aiaas.edge.manifest import load_public_key

            load_public_key(public_key)
        directory.mkdir(parents=True, exist_ok=True)
        _run(Agent(config), settings_for(host, http_port, grpc_port))
    except AiaasError as error:
        raise fail_with(error) from None
    except OSError as error:
        raise fail(f"{directory}: {error.strerror or error}", ExitCode.BAD_INPUT) from None


def _run(agent_: Agent, settings: ServerSettings) -> None:
    import asyncio

    from aiaas.edge.agent_server import serve

    try:
        import uvloop

        uvloop.run(serve(agent_, settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(agent_, settings))
