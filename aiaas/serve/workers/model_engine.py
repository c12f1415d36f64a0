"""The engine process of one model under `aiaas serve --workers N`: its versions' ONNX
Runtime sessions and dynamic batchers, and nothing else, so that each model batches
globally, is in memory once, and runs beside the others on its own interpreter.

The engine process that holds the repository (``engine_process``) starts one of these
for each model it loads and tells it what to load; front-end processes send the model's
infer calls straight here, over the same hop as to that engine (``hop``). Everything
else about the model (metadata, configuration, index, statistics as the protocol
reports them) stays with that engine, which asks this one for its statistics.

Run as `python -m aiaas.serve.workers.model_engine` by the engine process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Any

from aiaas.errors import AiaasError
from aiaas.exit_codes import exit_code_for
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.http_server import request_limits
from aiaas.serve.logs import configure_logging
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.settings import ServerSettings
from aiaas.serve.workers import child
from aiaas.serve.workers.hop import EngineService

log = logging.getLogger("aiaas.serve.workers")


class EngineSources:
    """What the engine process's sources say of each version (registry parameters and
    lineage), so that this process labels answers with the same provenance."""

    def __init__(self) -> None:
        self.known: dict[int, tuple[dict[str, Any], dict[str, Any] | None]] = {}

    def list_models(self) -> dict[str, Path]:
        return {}

    def problems(self) -> dict[str, str]:
        return {}

    def parameters(self, name: str, version: int) -> dict[str, Any]:
        return self.known.get(version, ({}, None))[0]

    def lineage(self, name: str, version: int) -> dict[str, Any] | None:
        return self.known.get(version, ({}, None))[1]


class ModelEngine:
    """One model's versions, served over the hop; its operations are the engine
    process's calls."""

    def __init__(self, name: str, settings: ServerSettings, address: str) -> None:
        self.name = name
        self.sources = EngineSources()
        self.repository = ModelRepository([self.sources], ControlMode.EXPLICIT)
        self.dataplane = DataPlane(self.repository, limits=request_limits(settings))
        self.dataplane.started = True
        self.service = EngineService(self.dataplane, address)
        self.service.ops.update(
            load=self.load,
            unload=self.unload,
            stats=self.stats,
            shm_register=self.shm_register,
            shm_unregister=self.shm_unregister,
        )

    async def load(
        self,
        folder: str,
        config: bytes | None,
        sources: list[tuple[int, dict[str, Any], dict[str, Any] | None]],
        max_model_bytes: int | None,
    ) -> list[dict[str, Any]]:
        """(Re)load from ``folder`` as the engine process would; on failure what served
        goes on serving. Returns each serving version as the engine process mirrors it."""
        self.sources.known = {version: (params, record) for version, params, record in sources}
        self.repository.max_model_bytes = max_model_bytes
        override = pb.ModelConfig.FromString(config) if config is not None else None
        await self.repository.load(
            self.name, config_override=override, folder_override=Path(folder)
        )
        return [
            {
                "version": loaded.version,
                "fingerprint": loaded.fingerprint,
                "config": loaded.config.SerializeToString(),
                "labels": loaded.labels,
                "provenance": dataclasses.asdict(loaded.provenance),
            }
            for loaded in self.repository.loaded_versions()
        ]

    async def unload(self) -> None:
        """Stop serving; returns once every request in flight is answered."""
        await self.repository.unload(self.name)
        await self.repository.drained()

    async def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "version": loaded.version,
                "stats": loaded.stats.to_dict(),
                "queue_depth": loaded.batcher.queue_depth,
            }
            for loaded in self.repository.loaded_versions()
        ]

    async def shm_register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.dataplane.shared_memory.register(name, key, offset, byte_size)

    async def shm_unregister(self, name: str | None) -> None:
        self.dataplane.shared_memory.unregister(name)


async def serve(config: child.ChildConfig) -> None:
    status = child.Status(config.status_fd)
    address = child.model_hop_address(config.run_dir, config.model)
    engine = ModelEngine(config.model, config.settings, address)
    try:
        engine.service.bind()
    except OSError as error:
        failure = AiaasError(f"the engine process of model '{config.model}': {error}")
        status.failed(failure)
        raise SystemExit(exit_code_for(failure)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = loop.create_task(engine.service.run())
    status.ready()
    try:
        await stop.wait()
        # The engine process stops this one once no request can come (its front ends
        # and itself are done): what is still queued finishes first.
        await engine.repository.close()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving


def main() -> None:
    config = child.read_config()
    configure_logging(config.settings, f"model {config.model}")
    child.run_async(serve(config))


if __name__ == "__main__":
    main()
