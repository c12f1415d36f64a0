"""Serving models from the registry: `--model models:/NAME@ALIAS` opens the registry,
resolves each URI into a local cache folder in Triton's layout (the registry's
`RegistrySource`), re-resolves them every `--registry-poll-secs` in every model
control mode so that a moved alias is swapped in without failing a request, and
mounts the registry's HTTP API next to the inference API.

Only the server imports this module, and only when a registry is configured, so a
server without one never loads SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.routing import Route

from aiaas.admin import AdminGuard
from aiaas.errors import AiaasError, InvalidArgument
from aiaas.registry.api import Registry
from aiaas.registry.db import home_dir
from aiaas.registry.http import registry_routes
from aiaas.registry.source import RegistrySource
from aiaas.registry.uri import parse_version_uri
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import ModelSource

log = logging.getLogger(__name__)


def default_cache_dir(http_port: int) -> Path:
    """One cache folder per server process (the source owns its folder): keyed by port."""
    owner = f"port-{http_port}" if http_port else f"pid-{os.getpid()}"
    return home_dir() / "serve-cache" / owner


@dataclass(eq=False)
class RegistryServing:
    """The registry as one server process uses it: a model source and the HTTP routes."""

    registry: Registry
    source: RegistrySource
    routes: list[Route]
    poll_secs: float

    @classmethod
    def open(
        cls,
        registry_uri: str | None,
        artifact_root: str | None,
        models: Sequence[str],
        *,
        cache_dir: Path,
        poll_secs: float,
        guard: AdminGuard,
        other_sources: Iterable[ModelSource] = (),
    ) -> RegistryServing:
        """Resolve every URI once, strictly: a typo or an unknown model or alias is a
        mistake in the command line, refused before the server starts."""
        names = [parse_version_uri(uri).name for uri in models]
        _refuse_overlap(names, other_sources)
        registry = Registry.open(registry_uri, artifact_root)
        try:
            for uri in models:
                _resolve(registry, uri)
            source = RegistrySource(registry, models, cache_dir, min_refresh_s=math.inf)
            source.refresh()
        except BaseException:
            registry.close()
            raise
        routes = registry_routes(registry, guard=guard)
        return cls(registry, source, routes, poll_secs)

    async def follow(self, repository: ModelRepository) -> None:
        """Until cancelled: re-resolve the URIs (off the event loop: queries, downloads)
        and let the repository swap in what moved, as its poll mode does for folders."""
        while self.source.names:
            await asyncio.sleep(self.poll_secs)
            try:
                await asyncio.to_thread(self.source.refresh)
                await repository.poll_once(only=self._followed(repository))
            except Exception:
                log.exception("following the registry failed")

    def close(self) -> None:
        self.registry.close()

    def _followed(self, repository: ModelRepository) -> set[str]:
        """Explicit mode follows only what is loaded, so an unload is not undone."""
        names = set(self.source.names)
        if repository.mode == ControlMode.EXPLICIT:
            names &= {version.name for version in repository.loaded_versions()}
        return names


def _resolve(registry: Registry, uri: str) -> None:
    try:
        registry.resolve(uri)
    except AiaasError as error:
        raise type(error)(f"--model {uri}: {error.message}") from None


def _refuse_overlap(names: list[str], sources: Iterable[ModelSource]) -> None:
    taken = {name for source in sources for name in source.list_models()}
    both = sorted(taken.intersection(names))
    if both:
        raise InvalidArgument(
            f"model {both[0]!r} is both in the model repository and named by --model; "
            "serve it from one of them"
        )
