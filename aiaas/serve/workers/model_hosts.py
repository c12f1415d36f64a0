"""The engine process's side of "one engine per model": it starts a model engine process
(``model_engine``) for each model it loads and mirrors what that process serves.

The engine process keeps its whole repository (index, metadata, configuration, load and
unload, polling, registry aliases, statistics as the protocol reports them); for each
model served elsewhere it holds a mirror of every version, built from what the model's
process reports, with no session or batcher. Front ends send a hosted model's infer
calls straight to its process (they ask this one for the route once); one that reaches
this engine anyway is passed on. Language models stay in this process (their /v1
routes live here).

A model's process that dies takes only that model down: its versions answer 503 /
UNAVAILABLE until a new process has loaded it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiaas.errors import AiaasError
from aiaas.serve import loading
from aiaas.serve.hosting import Hosting
from aiaas.serve.loading import Prepared
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.provenance import Provenance
from aiaas.serve.serving_config import serving_config
from aiaas.serve.settings import ServerSettings
from aiaas.serve.sources import ModelFolder
from aiaas.serve.types import InferRequest, InferResponse
from aiaas.serve.workers import child
from aiaas.serve.workers.hop import EngineClient
from aiaas.serve.workers.processes import WorkerProcess

if TYPE_CHECKING:
    from aiaas.serve.repository import ModelRepository
    from aiaas.serve.shared_memory import SystemSharedMemory

log = logging.getLogger("aiaas.serve.workers")

#: How long a model's process may take to finish its requests once told to stop.
_STOP_GRACE_S = 30.0


class HostedVersion:
    """A version another process serves, standing in for its runtime and batcher."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        #: As the model's process last reported it.
        self.queue_depth = 0

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        return await self.host.client.infer(name, version, request)

    async def close(self) -> None:
        """Nothing here: the model's process drains its own versions."""


class ModelHost:
    """One model's process, and the client that reaches it."""

    def __init__(self, name: str, process: WorkerProcess, client: EngineClient) -> None:
        self.name = name
        self.process = process
        self.client = client
        #: The configuration it was last told to load, and whether it can be loaded
        #: again if the process dies (not from files uploaded with the load request).
        self.override: pb.ModelConfig | None = None
        self.reloadable = True
        #: Whether a load has succeeded there: a process that dies while loading its
        #: model is not started again by itself (the load fails with the reason).
        self.loaded = False
        self.stopping = False
        self.watcher: asyncio.Task[None] | None = None

    async def stop(self, grace_s: float) -> None:
        self.stopping = True
        if not self.process.has_exited:
            await self.process.stop(grace_s)
        await self.client.close()


class ModelHosts(Hosting):
    """Each model in a process of its own; see the module's docstring."""

    #: Starting a model's process is mostly the interpreter's start-up: at start, four
    #: models load at once (Triton's default --model-load-thread-count).
    parallel_loads = 4

    def __init__(self, settings: ServerSettings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.hosts: dict[str, ModelHost] = {}
        self._delays: dict[str, float] = {}
        self._reloading: set[asyncio.Task[None]] = set()
        self.repository: ModelRepository | None = None
        self.shared_memory: SystemSharedMemory | None = None

    def attach(self, repository: ModelRepository, shared_memory: SystemSharedMemory) -> None:
        """The repository whose models these are, and the regions their processes need."""
        self.repository = repository
        self.shared_memory = shared_memory

    async def route(self, name: str) -> str | None:
        """The hop address of the process that serves ``name``, if one does (the engine's
        `route` operation)."""
        host = self.hosts.get(name)
        return None if host is None else host.client.address

    # ---- Hosting ---------------------------------------------------------------------

    async def prepare(
        self,
        folder: ModelFolder,
        override: pb.ModelConfig | None,
        loaded: dict[int, str],
        max_model_bytes: int | None,
    ) -> list[Prepared]:
        name = folder.name
        if loading.generates_text(folder, override):
            if name not in self.hosts:
                return await super().prepare(folder, override, loaded, max_model_bytes)
            # It was served by a process of its own: build every version here anew.
            prepared = await super().prepare(folder, override, {}, max_model_bytes)
            await self._forget(name)
            return prepared
        assert self.repository is not None
        host = self.hosts.get(name) or await self._start(name)
        sources = [
            (version, self.repository.source_parameters(name, version),
             self.repository.source_lineage(name, version))
            for version in folder.versions
        ]  # fmt: skip
        try:
            described = await host.client.call(
                "load",
                folder=str(folder.path),
                config=None if override is None else override.SerializeToString(),
                sources=sources,
                max_model_bytes=max_model_bytes,
            )
        except AiaasError as error:
            if not loaded:  # nothing of it serves: no process kept for it
                await self._forget(name)
            # The model's process said "failed to load 'NAME': ..." as this one will.
            message = str(error).removeprefix(f"failed to load '{name}': ")
            raise type(error)(message) from None
        host.override, host.loaded = override, True
        # Files uploaded with the load request are gone once it is answered.
        host.reloadable = folder.path == self.repository.folder_of(name)
        return [self._mirror(host, item, loaded) for item in described]

    def _mirror(self, host: ModelHost, item: dict[str, Any], loaded: dict[int, str]) -> Prepared:
        version, fingerprint = int(item["version"]), str(item["fingerprint"])
        if loaded.get(version) == fingerprint:
            return Prepared(version, fingerprint)  # unchanged: the mirror it has stays
        config = pb.ModelConfig.FromString(item["config"])
        hosted = HostedVersion(host)
        return Prepared(
            version,
            fingerprint,
            config=config,
            serving=serving_config(config),
            runtime=hosted,  # type: ignore[arg-type]  # it holds no session here
            labels=item["labels"],
            hosted=hosted,
            provenance=Provenance(**item["provenance"]),
        )

    async def unload(self, name: str) -> None:
        host = self.hosts.get(name)
        if host is None:
            return
        with contextlib.suppress(AiaasError):  # a process that is gone has unloaded it
            await host.client.call("unload")
        await self._forget(name)

    async def refresh(self) -> None:
        assert self.repository is not None
        hosts = list(self.hosts.values())
        reports = await asyncio.gather(
            *(host.client.call("stats") for host in hosts), return_exceptions=True
        )
        by_model = {
            host.name: {int(item["version"]): item for item in report}
            for host, report in zip(hosts, reports, strict=True)
            if not isinstance(report, BaseException)
        }
        for loaded in self.repository.loaded_versions():
            item = by_model.get(loaded.name, {}).get(loaded.version)
            if item is not None and isinstance(loaded.hosted, HostedVersion):
                loaded.stats.update_from(item["stats"])
                loaded.hosted.queue_depth = int(item["queue_depth"])

    async def registered(self, region: dict[str, Any]) -> None:
        await self._tell_all("shm_register", **region)

    async def unregistered(self, name: str | None) -> None:
        await self._tell_all("shm_unregister", name=name)

    async def close(self) -> None:
        for task in list(self._reloading):
            task.cancel()
        await asyncio.gather(*(self._forget(name) for name in list(self.hosts)))

    # ---- the processes -------------------------------------------------------------

    async def _tell_all(self, op: str, **args: Any) -> None:
        """Every model's process hears it before the caller is answered (one that is
        gone is told again when it is started)."""
        hosts = list(self.hosts.values())
        results = await asyncio.gather(
            *(host.client.call(op, **args) for host in hosts), return_exceptions=True
        )
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("the process of model '%s' did not take %s: %s", host.name, op, result)

    async def _start(self, name: str) -> ModelHost:
        process = WorkerProcess.start(
            f"engine of model '{name}'",
            child.MODEL_ENGINE_MODULE,
            lambda fd: child.ChildConfig(self.settings, self.run_dir, fd, model=name),
        )
        await process.ready()
        client = EngineClient(child.model_hop_address(self.run_dir, name), arena_bytes=0)
        client.start()
        host = ModelHost(name, process, client)
        self.hosts[name] = host
        host.watcher = asyncio.get_running_loop().create_task(self._watch(host))
        for region in self.shared_memory.status() if self.shared_memory is not None else []:
            try:
                await client.call("shm_register", **region)
            except AiaasError as error:
                log.warning("the process of model '%s' did not take region %s: %s",
                            name, region["name"], error)  # fmt: skip
        return host

    async def _forget(self, name: str) -> None:
        host = self.hosts.pop(name, None)
        if host is not None:
            await host.stop(_STOP_GRACE_S)

    async def _watch(self, host: ModelHost) -> None:
        code = await host.process.wait()
        if host.stopping or self.hosts.get(host.name) is not host:
            return
        assert self.repository is not None
        del self.hosts[host.name]
        await host.client.close()
        if not host.loaded:  # it died loading: that load fails, and says so
            return
        delay = host.process.restart_delay(self._delays.get(host.name, 0.0))
        self._delays[host.name] = delay
        reason = f"the engine process of model '{host.name}' exited with code {code}; " + (
            "it is being loaded again"
            if host.reloadable
            else "its files were uploaded with the load request: load it again"
        )
        log.warning("%s", reason)
        self.repository.lost(host.name, reason)
        if not host.reloadable:
            return
        task = asyncio.get_running_loop().create_task(self._reload(host, delay))
        self._reloading.add(task)
        task.add_done_callback(self._reloading.discard)

    async def _reload(self, host: ModelHost, delay: float) -> None:
        assert self.repository is not None
        await asyncio.sleep(delay)
        try:
            await self.repository.load(host.name, config_override=host.override)
        except AiaasError as error:
            log.error("%s", error)
