"""The model repository: which model versions are loaded, and loading, swapping and
unloading them without failing a request.

A (re)load builds every chosen version completely before it swaps the model's
version table in one step on the event loop; requests already queued on an old
version finish there, and the old sessions are released once drained. A load
that fails leaves whatever was serving in place and records why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiaas.errors import AiaasError, InternalError, InvalidArgument, NotFound, Unavailable
from aiaas.serve import loading, provenance
from aiaas.serve.batching import Batcher
from aiaas.serve.hosting import Hosted, Hosting
from aiaas.serve.llm.engine import LLMEngine
from aiaas.serve.llm.metrics import EngineMetrics
from aiaas.serve.loading import Prepared
from aiaas.serve.protocol.proto import model_config_pb2 as pb
from aiaas.serve.provenance import Provenance
from aiaas.serve.runtimes.onnx import OnnxModel
from aiaas.serve.serving_config import ServingConfig
from aiaas.serve.settings import ControlMode as ControlMode  # re-exported for its users
from aiaas.serve.sources import ModelFolder, ModelSource, read_model_folder
from aiaas.serve.stats import ModelStats

log = logging.getLogger(__name__)

#: Seconds a server shutting down lets running generations finish before ending them.
SHUTDOWN_DRAIN_S = 5.0


class State(StrEnum):
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass(eq=False)
class ModelVersion:
    """One loaded, serving version of a model."""

    name: str
    version: int
    config: pb.ModelConfig
    serving: ServingConfig
    runtime: OnnxModel
    batcher: Batcher
    stats: ModelStats
    labels: dict[str, list[str]]
    fingerprint: str
    #: Where this version came from; its answers are labelled with it.
    provenance: Provenance
    parameters: dict[str, Any] = field(default_factory=dict)
    #: The generation engine of a text-generation model (V2 infer does not serve these).
    engine: LLMEngine | None = None
    #: A version served by the model's own engine process (`--workers`): infer goes
    #: there, and this process holds no session or batcher of it.
    hosted: Hosted | None = None


@dataclass(eq=False)
class ModelEntry:
    name: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    state: State = State.UNAVAILABLE
    reason: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fingerprint: str | None = None
    #: The folder state whose load last failed, so polling does not retry it every time.
    failed_fingerprint: str | None = None


class ModelRepository:
    def __init__(
        self,
        sources: Iterable[ModelSource],
        mode: ControlMode = ControlMode.NONE,
        max_model_bytes: int | None = None,
        hosting: Hosting | None = None,
    ) -> None:
        self.sources = list(sources)
        self.hosting = hosting or Hosting()
        self.mode = mode
        self.max_model_bytes = max_model_bytes
        self._entries: dict[str, ModelEntry] = {}
        self._stats: dict[tuple[str, int], ModelStats] = {}
        self._llm_metrics: dict[tuple[str, int], EngineMetrics] = {}
        self._draining: set[asyncio.Task[None]] = set()
        #: Versions swapped out whose generations still run, by id: their engines still count
        #: in the metrics (requests running, tokens) until they are closed.
        self._retiring: dict[int, ModelVersion] = {}

    # ---- reading state -------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The version a request addresses, or the protocol's error for why not."""
        entry = self._entries.get(name)
        if entry is None or (not entry.versions and entry.reason == "unloaded"):
            raise NotFound(f"Request for unknown model: '{name}' is not found")
        if version is None or version == "":
            if not entry.versions:
                raise Unavailable(f"model '{name}' is not ready: {entry.reason or entry.state}")
            return entry.versions[max(entry.versions)]
        number = parse_version(version)
        loaded = entry.versions.get(number)
        if loaded is None:
            raise NotFound(f"Request for unknown model: '{name}' version {number} is not found")
        return loaded

    def llm_engine(self, name: str, version: str | None = None) -> LLMEngine:
        """The engine a generation request addresses; taken once per request, so a swap
        sends new requests to the new version while running ones finish on the old."""
        engine = self.llm_version(name, version).engine
        assert engine is not None
        return engine

    def llm_version(self, name: str, version: str | None = None) -> ModelVersion:
        """The text-generation version a request addresses (its engine and provenance)."""
        loaded = self.get(name, version)
        if loaded.engine is None:
            raise InvalidArgument(f"model '{name}' is not a text-generation model")
        return loaded

    def llm_model_names(self) -> list[str]:
        """Models whose newest loaded version generates text."""
        return sorted(
            name
            for name, entry in self._entries.items()
            if entry.versions and entry.versions[max(entry.versions)].engine is not None
        )

    def llm_engines(self) -> list[tuple[str, str, LLMEngine]]:
        """(model, version, engine) of every text-generation version that is loaded or
        still finishing its generations after a swap, for metrics."""
        versions = [*self.loaded_versions(), *self._retiring.values()]
        return [(v.name, str(v.version), v.engine) for v in versions if v.engine is not None]

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.get(name, version)
        except Unavailable:
            return False
        return True

    def all_ready(self) -> bool:
        return all(entry.state == State.READY for entry in self._entries.values())

    def loaded_versions(self) -> list[ModelVersion]:
        return [v for e in self._entries.values() for _, v in sorted(e.versions.items())]

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: one row per loaded version, one per other model."""
        problems = {n: text for s in self.sources for n, text in s.problems().items()}
        known = set(self._entries) | set(problems)
        known |= {n for s in self.sources for n in s.list_models()}
        rows: list[dict[str, str]] = []
        for name in sorted(known):
            entry = self._entries.get(name)
            # A reload that failed leaves these serving; its reason stays visible here.
            own = entry.reason if entry else ""
            reason = "; ".join(filter(None, [own, problems.get(name)]))
            if entry is not None and entry.versions:
                rows.extend(
                    {"name": name, "version": str(v), "state": State.READY, "reason": reason}
                    for v in sorted(entry.versions)
                )
            elif not ready_only:
                state = entry.state if entry else State.UNAVAILABLE
                reason = reason if entry or reason else "not loaded"
                rows.append({"name": name, "state": state, "reason": reason})
        return rows

    # ---- changing state ------------------------------------------------------------

    async def start(self, explicit: Iterable[str] = ()) -> None:
        """Initial load: everything in none/poll mode, the named models in explicit mode."""
        names = list(explicit) if self.mode == ControlMode.EXPLICIT else list(self._folders())
        if self.mode == ControlMode.EXPLICIT and "*" in names:
            names = list(self._folders())
        turns = asyncio.Semaphore(self.hosting.parallel_loads)  # waiters go in order

        async def load(name: str) -> None:
            async with turns:
                try:
                    await self.load(name)
                except AiaasError as error:
                    log.error("%s", error)

        await asyncio.gather(*(load(name) for name in names))

    async def load(
        self,
        name: str,
        *,
        config_override: pb.ModelConfig | None = None,
        folder_override: Path | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """(Re)load a model; on failure the previous versions keep serving."""
        if name not in self._entries and folder_override is None and name not in self._folders():
            # Remembering a name the repository never had would answer it 503 "not ready"
            # instead of 404 from then on, and let clients grow the table without bound.
            raise InvalidArgument(
                f"failed to load '{name}': no model folder named '{name}' in the repository"
            )
        entry = self._entries.setdefault(name, ModelEntry(name))
        async with entry.lock:
            previous_state = entry.state
            entry.state = State.LOADING
            try:
                folder = self._folder(name, folder_override)
                prepared = await self.hosting.prepare(
                    folder, config_override, _fingerprints(entry), self.max_model_bytes
                )
            except AiaasError as error:
                entry.state = previous_state if entry.versions else State.UNAVAILABLE
                entry.reason = f"failed to load '{name}': {error}"
                if not entry.versions:
                    entry.state = State.UNAVAILABLE
                raise InvalidArgument(entry.reason) from None
            self._swap(entry, prepared, dict(parameters or {}))

    async def unload(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            if name not in self._folders():
                raise NotFound(f"Request for unknown model: '{name}' is not found")
            entry = self._entries.setdefault(name, ModelEntry(name))
        async with entry.lock:
            self._clear(entry, "unloaded")
            await self.hosting.unload(name)

    def lost(self, name: str, reason: str) -> None:
        """The process that served the model's versions is gone: until it is loaded
        again the model answers 503 / UNAVAILABLE with ``reason``."""
        entry = self._entries.get(name)
        if entry is not None:
            self._clear(entry, reason)

    def _clear(self, entry: ModelEntry, reason: str) -> None:
        old = list(entry.versions.values())
        entry.versions = {}
        entry.state = State.UNAVAILABLE
        entry.reason = reason
        entry.fingerprint = None
        for version in old:
            self._retire(version)

    async def poll_once(self, only: Collection[str] | None = None) -> None:
        """Load new models, reload changed ones, unload removed ones: all in poll mode, or
        `only` those (the server follows registry aliases so in every mode)."""
        folders = self._folders()
        if only is not None:
            folders = {name: path for name, path in folders.items() if name in only}
        for name in list(self._entries):
            followed = only is None or name in only
            if followed and name not in folders and self._entries[name].versions:
                log.info("model %s removed from the repository; unloading", name)
                await self.unload(name)
        for name, path in folders.items():
            entry = self._entries.get(name)
            current = loading.folder_fingerprint(name, path)
            if entry is not None and current in (entry.fingerprint, entry.failed_fingerprint):
                continue
            try:
                await self.load(name)
                log.info("model %s (re)loaded by polling", name)
            except AiaasError as error:
                log.error("%s", error)
                self._entries[name].failed_fingerprint = current

    async def drained(self) -> None:
        """Every version swapped out or unloaded has finished what it was answering."""
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)

    async def close(self) -> None:
        for entry in self._entries.values():
            for version in entry.versions.values():
                self._retire(version, drain_timeout_s=SHUTDOWN_DRAIN_S)
            entry.versions = {}
        await self.drained()
        await self.hosting.close()

    # ---- internals -----------------------------------------------------------------

    def folder_of(self, name: str) -> Path | None:
        """The model's folder in the repository's sources, if it has one."""
        return self._folders().get(name)

    def _folders(self) -> dict[str, Path]:
        folders: dict[str, Path] = {}
        for source in self.sources:
            for name, path in source.list_models().items():
                folders.setdefault(name, path)
        return folders

    def _folder(self, name: str, override: Path | None) -> ModelFolder:
        path = override or self._folders().get(name)
        if path is None:
            raise NotFound(f"no model folder named '{name}' in the repository")
        return read_model_folder(name, path)

    def _swap(
        self, entry: ModelEntry, prepared: list[Prepared], parameters: dict[str, Any]
    ) -> None:
        old = entry.versions
        new: dict[int, ModelVersion] = {}
        for item in prepared:
            current = old.get(item.version)
            if item.runtime is None and current is not None:
                new[item.version] = current
            else:
                new[item.version] = self._activate(entry.name, item, parameters)
        entry.versions = new
        entry.state = State.READY
        entry.reason = ""
        entry.fingerprint = loading.model_fingerprint(prepared)
        for number, version in old.items():
            if new.get(number) is not version:
                self._retire(version)

    def _activate(self, name: str, item: Prepared, parameters: dict[str, Any]) -> ModelVersion:
        if item.runtime is None or item.serving is None or item.config is None:
            raise InternalError(f"model '{name}' version {item.version} was not built")
        stats = self._stats.setdefault((name, item.version), ModelStats(name, str(item.version)))
        batcher = item.hosted or Batcher(
            item.runtime.run,
            max_batch_size=item.serving.max_batch_size,
            batching=item.serving.batching,
            instance_count=item.serving.runtime.instance_count,
            stats=stats,
        )
        engine = None
        if item.llm is not None:
            engine = LLMEngine(
                item.llm,
                model_name=name,
                model_version=str(item.version),
                metrics=self._llm_metrics.setdefault((name, item.version), EngineMetrics()),
            )
        source_parameters = self.source_parameters(name, item.version)
        origin = item.provenance or provenance.of_version(
            name,
            item.version,
            file_sha256=item.file_sha256,
            file_record=item.file_lineage,
            source_parameters=source_parameters,
            source_record=self.source_lineage(name, item.version),
        )
        return ModelVersion(
            name=name,
            version=item.version,
            config=item.config,
            serving=item.serving,
            runtime=item.runtime,
            batcher=batcher,
            stats=stats,
            labels=item.labels,
            fingerprint=item.fingerprint,
            provenance=origin,
            parameters={**source_parameters, **origin.metadata_parameters(), **parameters},
            engine=engine,
            hosted=item.hosted,
        )

    def source_parameters(self, name: str, version: int) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for source in self.sources:
            merged.update(source.parameters(name, version))
        return merged

    def source_lineage(self, name: str, version: int) -> dict[str, Any] | None:
        for source in self.sources:
            record = source.lineage(name, version)
            if record is not None:
                return record
        return None

    def _retire(self, version: ModelVersion, drain_timeout_s: float | None = None) -> None:
        """Drain an old version in the background, then free its sessions; its running
        generations finish first (up to the engine's drain timeout)."""

        async def drain() -> None:
            try:
                await version.batcher.close()
                if version.engine is not None:
                    await version.engine.close(drain_timeout_s)
                if version.hosted is None:
                    version.runtime.close()
            finally:
                self._retiring.pop(id(version), None)

        self._retiring[id(version)] = version
        task = asyncio.get_running_loop().create_task(drain())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)


def _fingerprints(entry: ModelEntry) -> dict[int, str]:
    return {number: version.fingerprint for number, version in entry.versions.items()}


def parse_version(version: str) -> int:
    # ASCII digits only: str.isdigit() is true for '²', which int() refuses.
    if not (version.isascii() and version.isdigit()) or int(version) <= 0:
        raise InvalidArgument(
            f"failed to get model version from specified version string '{version}'"
        )
    return int(version)
