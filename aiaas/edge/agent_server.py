"""The agent and aiaas's own server in one process: the server serves the agent's
`current` folder (explicit control mode: only the agent loads), and adds
GET /v2/edge/state, the agent's state as it reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiaas.edge.agent import Agent
from aiaas.serve.server import Server
from aiaas.serve.settings import ControlMode, ServerSettings

log = logging.getLogger("aiaas.edge.agent")


@dataclass(frozen=True)
class CurrentSource:
    """The model source over the agent's folder: one model, the version `current` names."""

    name: str
    current: Path

    def list_models(self) -> dict[str, Path]:
        return {self.name: self.current} if self.current.is_dir() else {}

    def problems(self) -> dict[str, str]:
        return {}

    def parameters(self, name: str, version: int) -> dict[str, Any]:
        return {"model_uri": f"models:/{name}/{version}"}

    def lineage(self, name: str, version: int) -> dict[str, Any] | None:
        """Nothing beyond the model file's own record, which the server reads itself."""
        return None


class AgentServer(Server):
    def __init__(self, settings: ServerSettings, agent: Agent) -> None:
        super().__init__(settings, [CurrentSource(agent.name, agent.dir.current)])
        self.agent = agent

    def http_app(self) -> Starlette:
        app = super().http_app()
        app.router.routes.insert(0, Route("/v2/edge/state", self._state, methods=["GET"]))
        return app

    async def _state(self, request: Request) -> Response:
        return JSONResponse(self.agent.state.to_dict())


def settings_for(host: str, http_port: int, grpc_port: int = 0) -> ServerSettings:
    """The server's settings for a device: what it serves comes from the agent only, so
    the environment's AIAAS_MODEL_REPOSITORY, AIAAS_REGISTRY_URI or AIAAS_MODEL are
    overridden here, not taken. gRPC is off unless asked for (grpc_port 0): a small
    device's one port is HTTP."""
    return ServerSettings.model_validate(
        {
            "host": host,
            "http_port": http_port,
            "grpc_port": grpc_port,
            "model_control_mode": ControlMode.EXPLICIT,
            "load_model": [],
            "model_repository": None,
            "registry_uri": None,
            "artifact_root": None,
            "model": [],
            "metrics_port": None,
            "shutdown_timeout_s": 5.0,
        }
    )


async def serve(agent: Agent, settings: ServerSettings) -> None:
    """Serve until SIGINT/SIGTERM (the server's own handlers), then stop the agent."""
    server = AgentServer(settings, agent)
    following = asyncio.create_task(agent.run(server.repository))
    try:
        await server.serve()
    finally:
        agent.stop()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        agent.close()
