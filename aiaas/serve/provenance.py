"""Where a served version came from, worked out once when it loads.

The lineage record is the registry's when the version is served from one (its run,
data, recipe and parent edges are the authority; the file's own record fills what the
registry does not know), else the file's own ``aiaas.lineage`` metadata. From it come
the ``parameters`` of the V2 model metadata, the lineage link, the ``lineage`` of a
``/v1/models`` entry and the one line an answer carries under ``--provenance-header``.

Nothing here runs per request: an answer's header is read off the version object that
computed it, so a version swapped in under load never labels another one's answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiaas import lineage

#: The HTTP header (REST, /v1) and gRPC trailing-metadata key naming the version that answered.
HEADER = "aiaas-model-version"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Provenance:
    name: str
    version: int
    #: The registry version's manifest hash when served from a registry, else the file's.
    sha256: str
    #: The registry version (``models:/NAME/VERSION``) when served from a registry.
    registry_version: int | None
    record: dict[str, Any] | None
    #: ``--provenance-header``'s value, built once.
    header: str

    @property
    def link(self) -> str | None:
        """The URL path of the full record: the registry's lineage of a registry version,
        else the server's own route over the file's record (none without one)."""
        name = quote(self.name, safe="")
        if self.registry_version is not None:
            return f"/v2/registry/models/{name}/versions/{self.registry_version}/lineage"
        if self.record is None:
            return None
        return f"/v2/models/{name}/versions/{self.version}/lineage"

    @property
    def registry_uri(self) -> str | None:
        if self.registry_version is None:
            return None
        return f"models:/{self.name}/{self.registry_version}"

    def metadata_parameters(self) -> dict[str, str | int]:
        """The summary as V2 ``parameters``: only strings, integers and booleans are
        parameter values on both wires, so ``parents`` is a JSON array in a string and an
        unknown field is left out rather than null."""
        parameters: dict[str, str | int] = {}
        for key, value in (lineage.summary(self.record) or {}).items():
            if key == "parents":
                if value:
                    parameters["parents"] = json.dumps(value, separators=(",", ":"))
            elif isinstance(value, str | int) and value != "":
                parameters[key] = value
        if self.registry_uri is None:
            parameters["sha256"] = self.sha256
        else:
            parameters["version_uri"] = self.registry_uri
        if self.link is not None:
            parameters["lineage"] = self.link
        return parameters

    def card(self) -> dict[str, Any]:
        """The same facts for a ``/v1/models`` entry, where JSON values may nest."""
        summary = lineage.summary(self.record) or dict.fromkeys(lineage.SUMMARY_FIELDS)
        return {
            **summary,
            "parents": summary.get("parents") or [],
            "model_version": self.registry_uri or f"{self.name}/{self.version}",
            "sha256": self.sha256,
            "url": self.link,
        }


def of_version(
    name: str,
    version: int,
    *,
    file_sha256: str,
    file_record: Mapping[str, Any] | None,
    source_parameters: Mapping[str, Any],
    source_record: Mapping[str, Any] | None,
) -> Provenance:
    """The provenance of a version being activated; a source's ``registry_version`` and
    ``sha256`` parameters mark a version served from a registry."""
    registry_version = source_parameters.get("registry_version")
    if registry_version is not None:
        registry_version = int(registry_version)
    served_as = (
        f"{name}/{version}" if registry_version is None else f"models:/{name}/{registry_version}"
    )
    sha256 = str(source_parameters.get("sha256") or file_sha256)
    return Provenance(
        name=name,
        version=version,
        sha256=sha256,
        registry_version=registry_version,
        record=merge(file_record, source_record),
        # Header and metadata values are ASCII: a model name outside it is percent-encoded.
        header=f"{quote(served_as, safe=':/@')} sha256={sha256}",
    )


def merge(
    file_record: Mapping[str, Any] | None, source_record: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The source's facts over the file's; parents of both, the source's first, once each."""
    if source_record is None:
        return None if file_record is None else dict(file_record)
    merged = dict(file_record or {})
    merged.update({k: v for k, v in source_record.items() if v is not None and k != "parents"})
    parents = [*(source_record.get("parents") or []), *((file_record or {}).get("parents") or [])]
    seen: set[str] = set()
    unique = []
    for parent in parents:
        key = json.dumps(_parent_identity(parent), sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(dict(parent))
    merged["parents"] = unique
    ordered = {key: merged.get(key) for key in lineage.FIELDS}
    return ordered | {k: v for k, v in merged.items() if k not in ordered}


def _parent_identity(parent: Mapping[str, Any]) -> Any:
    return parent.get("uri") or parent.get("path") or dict(parent)


def file_sha256(path: Path) -> str:
    """A model file's hash, read once at load (blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
