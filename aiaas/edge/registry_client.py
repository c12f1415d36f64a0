"""The agent's side of the registry's HTTP API: conditional alias reads, resumable file
downloads, device reports. Blocking (httpx): the agent runs it off its event loop.

Two kinds of failure matter to the agent and are kept apart: the registry cannot be
reached (`RegistryUnreachable`: keep serving, back off, retry) and an answer that says
no (an unknown model or alias: `AiaasError` with the registry's message).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aiaas.edge.manifest import BundleRejected
from aiaas.errors import InvalidArgument, NotFound, Unavailable
from aiaas.registry.faults import pause_point
from aiaas.registry.uri import ModelUri

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
PREFIX = "/v2/registry"
#: Errors that mean the device's disk cannot take the download: full, or over a size limit.
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class RegistryUnreachable(Unavailable):
    """No answer, or a 5xx: the registry may be back later."""


class DiskFull(BundleRejected):
    """The download did not fit on the device."""


class Stopped(Exception):
    """The agent is shutting down; a download stops between two chunks."""


@dataclass(frozen=True)
class Target:
    """What the followed URI names now, with the ETag that answer came with."""

    version: dict[str, Any]
    etag: str | None

    @property
    def number(self) -> int:
        return int(self.version["version"])

    @property
    def sha256(self) -> str:
        return str(self.version["sha256"])


class RegistryClient:
    def __init__(self, base_url: str, token: str | None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def target(self, uri: ModelUri, etag: str | None) -> Target | None:
        """The version URI names now; None when it is unchanged since `etag` (a 304)."""
        if uri.alias is not None:
            path = f"{PREFIX}/models/{uri.name}/aliases/{uri.alias}"
        elif uri.version is not None:
            path = f"{PREFIX}/models/{uri.name}/versions/{uri.version}"
        else:
            raise InvalidArgument(f"{uri}: follow an alias (@ALIAS) or a version (/N)")
        headers = {"If-None-Match": etag} if etag else {}
        response = self._send("GET", path, headers=headers)
        if response.status_code == 304:
            return None
        return Target(_json(response), response.headers.get("etag"))

    def download(
        self, name: str, version: int, item: dict[str, Any], dest: Path, stop: threading.Event
    ) -> None:
        """One file into `dest`, resuming a `.part` left by an earlier try; the sha256 is
        checked before the file takes its name, so `dest` is complete or absent."""
        path, sha256, size = item["path"], item["sha256"], int(item["size_bytes"])
        if dest.is_file() and dest.stat().st_size == size:
            return  # renamed into place only once verified
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.is_file() else 0
        if offset > size:
            part.unlink()
            offset = 0
        if offset < size:
            url = f"{PREFIX}/models/{name}/versions/{version}/files/{path}"
            self._fetch(url, sha256, part, (offset, size), stop)
        if _sha256(part) != sha256:
            part.unlink(missing_ok=True)
            raise BundleRejected(f"{path} of models:/{name}/{version} does not match its sha256")
        os.replace(part, dest)

    def _fetch(
        self, url: str, sha256: str, part: Path, span: tuple[int, int], stop: threading.Event
    ) -> None:
        """Append to `part` from byte `span[0]` of `span[1]` (all of it if the registry
        no longer has the same file: If-Range)."""
        offset, size = span
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{sha256}"'} if offset else {}
        try:
            with self.http.stream("GET", url, headers=headers) as response:
                if response.status_code not in (200, 206):
                    response.read()
                    _raise_for(response)
                resumed = response.status_code == 206
                if resumed:
                    log.info("resuming %s at byte %d", part.name.removesuffix(".part"), offset)
                written = offset if resumed else 0
                with part.open("ab" if resumed else "wb") as handle:
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
                        handle.flush()
                        written += len(chunk)
                        if written < size:
                            pause_point("edge-download-chunk")
                        if stop.is_set():
                            raise Stopped
        except httpx.TransportError as error:
            raise RegistryUnreachable(f"download cut off: {_reason(error)}") from None
        except OSError as error:
            if error.errno in DISK_FULL:
                name = part.name.removesuffix(".part")
                reason = os.strerror(error.errno or 0)
                raise DiskFull(f"disk full while downloading {name}: {reason}") from None
            raise

    def report(self, device_id: str, body: dict[str, Any]) -> None:
        self._send("PUT", f"{PREFIX}/devices/{device_id}", json=body)

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **options)
        except httpx.TransportError as error:
            raise RegistryUnreachable(
                f"registry {self.http.base_url} unreachable: {_reason(error)}"
            ) from None
        if response.status_code >= 400:
            _raise_for(response)
        return response


def _raise_for(response: httpx.Response) -> None:
    try:
        message = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code >= 500:
        raise RegistryUnreachable(f"registry answered {response.status_code} to {where}: {message}")
    if response.status_code == 404:
        raise NotFound(message)
    raise InvalidArgument(f"registry refused {where} ({response.status_code}): {message}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise RegistryUnreachable(
            f"registry answered {response.request.url.path} with non-JSON"
        ) from None
    if not isinstance(data, dict):
        raise RegistryUnreachable(f"registry answered {response.request.url.path} with non-JSON")
    return data


def _reason(error: httpx.TransportError) -> str:
    return str(error) or type(error).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
