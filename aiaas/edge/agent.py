"""The edge agent: follows `models:/NAME@ALIAS` in a registry over HTTP and serves the
version it names on the device with the V2 protocol, in one process.

Each poll is one conditional read (an unmoved alias is a 304). When the alias moves,
the new version's files download into a staging folder (resumable), every sha256 is
checked (and the bundle's signature, given a key), the model answers one sample
inference, and only then does it go live: two renames (see `layout`) and an explicit
load into the server's repository, which swaps without failing a request. A version
that fails any check is refused, said in one line, reported, and not tried again
until the alias moves; the last good version keeps serving.

With the registry unreachable the agent keeps serving and retries with capped
exponential backoff and jitter; it reports its state whenever the registry answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiaas.edge.checks import check_version
from aiaas.edge.layout import AgentDir
from aiaas.edge.manifest import BundleRejected
from aiaas.edge.registry_client import RegistryClient, RegistryUnreachable, Stopped, Target
from aiaas.errors import AiaasError
from aiaas.registry.files import safe_relative
from aiaas.registry.uri import ModelUri, parse_version_uri
from aiaas.serve.repository import ModelRepository

log = logging.getLogger("aiaas.edge.agent")

#: How often an agent with nothing new says it is alive.
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class AgentConfig:
    registry_url: str
    model_uri: str
    directory: Path
    device_id: str
    public_key: Path | None = None
    token: str | None = None
    poll_secs: float = 5.0
    max_backoff_secs: float = 60.0


@dataclass
class AgentState:
    """What the agent says about itself: to the registry, on GET /v2/edge/state, on disk."""

    model_uri: str
    state: str = "starting"
    version: int | None = None
    sha256: str | None = None
    last_error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("polls", "not_modified", "installed", "refused", "unreachable"), 0
        )
    )

    def report(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "state": self.state,
            "version": self.version,
            "sha256": self.sha256,
            "counts": dict(self.counts),
            "last_error": self.last_error,
            "agent_time": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.report(), "refused": dict(self.refused)}


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.uri: ModelUri = parse_version_uri(config.model_uri)
        self.name = self.uri.name
        self.dir = AgentDir(config.directory)
        self.state = AgentState(config.model_uri)
        self.client = RegistryClient(config.registry_url, config.token)
        self.stop_event = threading.Event()
        self._etag: str | None = None
        self._failures = 0
        self._failure: str | None = None
        self._reported: tuple[Any, ...] | None = None
        self._reported_at = 0.0
        self._report_refused = False

    # ---- the loop ------------------------------------------------------------------

    async def run(self, repository: ModelRepository) -> None:
        """Until stopped: serve what is installed, then poll, install, report."""
        self.dir.prepare()
        await self._serve_installed(repository)
        while not self.stop_event.is_set():
            await self.poll_once(repository)
            await asyncio.to_thread(self._report)
            await asyncio.to_thread(self.stop_event.wait, self._delay())

    async def poll_once(self, repository: ModelRepository) -> None:
        self.state.counts["polls"] += 1
        try:
            target = await asyncio.to_thread(self.client.target, self.uri, self._etag)
            if target is None:
                self.state.counts["not_modified"] += 1
            else:
                await self._follow(target, repository)
        except RegistryUnreachable as error:
            self.state.counts["unreachable"] += 1
            self._failed(f"{error.message}; still serving {self._serving()}")
        except Stopped:
            return
        except AiaasError as error:  # the registry said no: an unknown model or alias
            self._failed(f"{self.config.model_uri}: {error.message}")
        else:
            if self._failures and self.state.last_error == self._failure:
                self.state.last_error = None  # back in touch: that error is over
            self._failures, self._failure = 0, None
        self._write_state()

    def _failed(self, message: str) -> None:
        """A poll that did not get through: said once per outage, kept as last_error."""
        self._failures += 1
        self._failure = message
        self._error(message, warn=self._failures == 1)

    async def _follow(self, target: Target, repository: ModelRepository) -> None:
        key = f"{self.name}/{target.number}"
        if target.number == self.state.version and target.sha256 == self.state.sha256:
            if self.state.state == "refused":  # the alias is back on what this device serves
                self.state.last_error = None
            self.state.state = "serving"
        elif self.state.refused.get(key) == target.sha256:
            pass  # refused before, and the alias has not moved since
        else:
            await self._update(target, repository)
        self._etag = target.etag  # only once handled: a cut download is tried again

    async def _update(self, target: Target, repository: ModelRepository) -> None:
        uri = f"models:/{self.name}/{target.number}"
        self.state.state = "updating"
        self._write_state()
        log.info("%s now names %s; downloading", self.config.model_uri, uri)
        previous = self.dir.current.resolve() if self.dir.current.is_symlink() else None
        try:
            installed = self.dir.kept(target.number, target.sha256)
            if installed is not None:  # a rollback to the version kept on disk
                self.dir.point_at(installed)
            else:
                await asyncio.to_thread(self._stage, target)
                record = {"name": self.name, "version": target.number, "sha256": target.sha256}
                installed = self.dir.install(target.number, record)
            await self._load_or_fall_back(repository, previous)
        except BundleRejected as error:
            self.dir.drop_staging()
            self._refuse(target, uri, error.message)
            return
        except OSError as error:
            self.dir.drop_staging()
            self._refuse(target, uri, f"cannot install: {error}")
            return
        self.dir.prune({installed, *([previous] if previous else [])})
        self.state.version, self.state.sha256 = target.number, target.sha256
        self.state.state, self.state.last_error = "serving", None
        self.state.counts["installed"] += 1
        log.info("serving %s", uri)

    def _stage(self, target: Target) -> None:
        """Download (resuming), check every hash, the bundle and a sample inference."""
        self.dir.drop_staging(keep=target.number)
        folder = self.dir.staging(target.number)
        for item in target.version.get("files", []):
            dest = folder.joinpath(*safe_relative(item["path"]).parts)
            self.client.download(self.name, target.number, item, dest, self.stop_event)
        found = check_version(folder, self.config.public_key)
        if found is not None:
            self.dir.write_task(target.number, found.get("task"))

    async def _load_or_fall_back(self, repository: ModelRepository, previous: Path | None) -> None:
        try:
            await repository.load(self.name)
        except AiaasError as error:
            if previous is not None:
                self.dir.point_at(previous)
                with contextlib.suppress(AiaasError):
                    await repository.load(self.name)
            raise BundleRejected(f"the server could not load it: {error.message}") from None

    async def _serve_installed(self, repository: ModelRepository) -> None:
        record = self.dir.installed()
        if record is None:
            return
        try:
            await repository.load(self.name)
        except AiaasError as error:
            self._error(f"cannot serve the installed version: {error.message}", warn=True)
            return
        self.state.version, self.state.sha256 = int(record["version"]), str(record["sha256"])
        self.state.state = "serving"
        log.info("serving installed models:/%s/%s", self.name, record["version"])

    # ---- state ---------------------------------------------------------------------

    def _refuse(self, target: Target, uri: str, reason: str) -> None:
        self.state.refused[f"{self.name}/{target.number}"] = target.sha256
        self.state.counts["refused"] += 1
        self.state.state = "refused"
        self._error(f"refused {uri}: {reason}; still serving {self._serving()}", warn=True)

    def _error(self, message: str, *, warn: bool) -> None:
        self.state.last_error = message
        if warn:
            log.error("%s", message)

    def _serving(self) -> str:
        version = self.state.version
        return f"models:/{self.name}/{version}" if version is not None else "nothing"

    def _delay(self) -> float:
        """The poll interval; after failures, capped exponential backoff with jitter."""
        if self._failures == 0:
            return self.config.poll_secs
        ceiling = min(self.config.max_backoff_secs, self.config.poll_secs * 2**self._failures)
        return random.uniform(ceiling / 2, ceiling)

    def _report(self) -> None:
        """Tell the registry when something changed, and every HEARTBEAT_S regardless."""
        report = self.state.report()
        changed = (report["state"], report["version"], report["last_error"]) != self._reported
        if not changed and time.monotonic() - self._reported_at < HEARTBEAT_S:
            return
        try:
            self.client.report(self.config.device_id, report)
        except RegistryUnreachable as error:
            log.debug("state not reported: %s", error.message)
            return
        except AiaasError as error:  # a token missing or wrong: said once, not every poll
            if not self._report_refused:
                log.warning("the registry refuses this device's reports: %s", error.message)
            self._report_refused = True
        else:
            self._report_refused = False
        # A refused report is tried again on the next change or heartbeat, not every poll.
        self._reported = (report["state"], report["version"], report["last_error"])
        self._reported_at = time.monotonic()

    def _write_state(self) -> None:
        """DIR/agent-state.json, replaced atomically, for whoever looks at the device."""
        path = self.config.directory / "agent-state.json"
        temporary = path.with_name(path.name + ".tmp")
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps(self.state.to_dict(), indent=2))
            os.replace(temporary, path)

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.client.close()
