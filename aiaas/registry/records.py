"""Plain records that leave the registry: no database rows, sessions or lazy loads.

Every record turns into JSON-ready dicts with `to_dict`, the one shape that the
CLI's `--json` and the HTTP API both print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiaas.registry.uri import version_uri
from aiaas.tensors import TensorSpec

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def to_dict(self) -> JsonDict:
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: JsonDict) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(item) for item in data.get("inputs", [])),
            tuple(TensorSpec.from_dict(item) for item in data.get("outputs", [])),
        )


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of a version's artifact; `path` is relative, with '/' separators."""

    path: str
    sha256: str
    size_bytes: int

    def to_dict(self) -> JsonDict:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True, slots=True)
class VersionRef:
    name: str
    version: int

    @property
    def uri(self) -> str:
        return version_uri(self.name, self.version)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    description: str | None
    created_at: datetime
    sha256: str
    size_bytes: int
    files: tuple[ArtifactFile, ...]
    signature: Signature
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    parents: tuple[VersionRef, ...] = ()
    run_id: str | None = None
    params: JsonDict | None = None
    recipe: JsonDict | None = None
    aliases: tuple[str, ...] = ()
    #: Set only on the record `register` returns: earlier versions of this model with the
    #: same content (sha256), so that a re-registration is said out loud, not made silently.
    identical_to: tuple[VersionRef, ...] = ()

    @property
    def uri(self) -> str:
        return version_uri(self.name, self.version)

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.version)

    def to_dict(self) -> JsonDict:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "files": [item.to_dict() for item in self.files],
            "signature": self.signature.to_dict(),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
            "parents": [parent.uri for parent in self.parents],
            "run": {"id": self.run_id, "params": self.params},
            "recipe": self.recipe,
            "aliases": list(self.aliases),
        } | ({"identical_to": [ref.uri for ref in self.identical_to]} if self.identical_to else {})


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None
    version_count: int = 0

    def to_dict(self) -> JsonDict:
        return {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "tags": dict(self.tags),
            "aliases": dict(self.aliases),
            "latest_version": self.latest_version,
            "version_count": self.version_count,
        }


@dataclass(frozen=True)
class LineageNode:
    """A version in a lineage tree; `exists` is False for a parent deleted since."""

    ref: VersionRef
    exists: bool
    links: tuple[LineageNode, ...] = ()

    def to_dict(self, key: str) -> JsonDict:
        return {
            "uri": self.ref.uri,
            "name": self.ref.name,
            "version": self.ref.version,
            "exists": self.exists,
            key: [link.to_dict(key) for link in self.links],
        }


@dataclass(frozen=True)
class Lineage:
    """Ancestors (parents, their parents...) and descendants of one version, as trees."""

    version: VersionRef
    ancestors: tuple[LineageNode, ...]
    descendants: tuple[LineageNode, ...]

    def to_dict(self) -> JsonDict:
        return {
            "uri": self.version.uri,
            "ancestors": [node.to_dict("parents") for node in self.ancestors],
            "descendants": [node.to_dict("children") for node in self.descendants],
        }


@dataclass(frozen=True)
class NewVersion:
    """What `register` hands the store once the artifact is safely written."""

    files: tuple[ArtifactFile, ...]
    sha256: str
    size_bytes: int
    signature: Signature
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    parents: tuple[VersionRef, ...] = ()
    run_id: str | None = None
    params: JsonDict | None = None
    recipe: JsonDict | None = None


@dataclass(frozen=True, slots=True)
class MetricFilter:
    """`accuracy>0.97`: key, one of < <= = != >= >, and a number."""

    key: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:g}"


@dataclass(frozen=True)
class DeviceReport:
    """What an edge agent last said about itself: which version of which model it serves,
    in which state, and the last error it met. `reported_at` is the registry's clock;
    `agent_time` the device's own, kept as sent (device clocks drift)."""

    device_id: str
    model_uri: str
    model: str
    state: str
    version: int | None = None
    sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    agent_time: str | None = None
    reported_at: datetime | None = None

    @property
    def version_uri(self) -> str | None:
        return None if self.version is None else version_uri(self.model, self.version)

    def to_dict(self) -> JsonDict:
        return {
            "device_id": self.device_id,
            "model_uri": self.model_uri,
            "model": self.model,
            "version": self.version,
            "version_uri": self.version_uri,
            "sha256": self.sha256,
            "state": self.state,
            "counts": dict(self.counts),
            "last_error": self.last_error,
            "agent_time": self.agent_time,
            "reported_at": self.reported_at.isoformat() if self.reported_at else None,
        }
