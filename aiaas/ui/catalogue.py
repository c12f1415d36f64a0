"""What the pages show, as plain records, whichever source the models come from: the
registry (versions, aliases, tags, metrics, lineage) or a model repository folder
(versions and files only). The pages read a `Catalogue`; they never see a registry
row or a folder walk."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aiaas.errors import NotFound
from aiaas.tensors import TensorSpec
from aiaas.ui.search import Query
from aiaas.ui.svg import TreeNode

#: Metrics where a smaller number is better; any other metric is better larger.
_LOWER_IS_BETTER = ("loss", "error", "latency", "perplexity", "size", "_ms", "mse", "mae")


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    description: str | None = None
    created_at: datetime | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    files: tuple[FileInfo, ...] = ()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    parents: tuple[tuple[str, int], ...] = ()
    run_id: str | None = None
    params: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "registry" or "repository"
    versions: tuple[VersionInfo, ...] = ()
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def latest_version(self) -> int | None:
        return max((v.version for v in self.versions), default=None)

    def version(self, number: int) -> VersionInfo:
        for version in self.versions:
            if version.version == number:
                return version
        raise NotFound(f"model {self.name!r} has no version {number}")

    def matching(self, query: Query) -> list[VersionInfo]:
        """The versions that meet every tag (the version's or the model's) and metric term."""
        return [
            v
            for v in self.versions
            if query.tags_match(v.tags, self.tags) and query.metrics_match(v.metrics)
        ]

    def metric_names(self) -> list[str]:
        return sorted({key for version in self.versions for key in version.metrics})


@dataclass(frozen=True)
class Lineage:
    """Ancestor and descendant trees of a version (registry lineage nodes)."""

    ancestors: Sequence[TreeNode]
    descendants: Sequence[TreeNode]


class Catalogue(Protocol):
    """Where the pages read models from; every method raises NotFound for an unknown name."""

    source: str

    def models(self) -> list[ModelInfo]: ...

    def model(self, name: str) -> ModelInfo: ...

    def lineage(self, name: str, version: int) -> Lineage | None: ...

    def devices(self, name: str, version: int) -> list[dict[str, Any]] | None:
        """Edge devices reported running the version; None when the store keeps no reports."""
        ...


def lower_is_better(metric: str) -> bool:
    lowered = metric.lower()
    return any(part in lowered for part in _LOWER_IS_BETTER)


def best_metric(
    versions: Iterable[VersionInfo], prefer: Sequence[str] = ()
) -> tuple[str, float, int] | None:
    """(metric, best value, version with it): the first of `prefer` any version has,
    else the alphabetically first metric; best is the smallest for losses and latencies."""
    chosen = list(versions)
    names = sorted({key for version in chosen for key in version.metrics})
    if not names:
        return None
    metric = next((key for key in prefer if key in names), names[0])
    scored = [(v.metrics[metric], v.version) for v in chosen if metric in v.metrics]
    value, version = min(scored) if lower_is_better(metric) else max(scored)
    return metric, value, version


def metric_series(model: ModelInfo) -> dict[str, list[tuple[int, float]]]:
    """Each metric's (version, value) pairs, for the charts across versions."""
    series: dict[str, list[tuple[int, float]]] = {}
    for version in sorted(model.versions, key=lambda v: v.version):
        for key, value in version.metrics.items():
            series.setdefault(key, []).append((version.version, value))
    return dict(sorted(series.items()))


def merged(first: Sequence[ModelInfo], second: Sequence[ModelInfo]) -> list[ModelInfo]:
    """Both lists by name; a name in both is taken from `first`."""
    taken = {model.name for model in first}
    return sorted([*first, *(m for m in second if m.name not in taken)], key=lambda m: m.name)


def find(models: Sequence[ModelInfo], name: str) -> ModelInfo:
    for model in models:
        if model.name == name:
            return model
    raise NotFound(f"no model named {name!r} in the catalogue")


def tags_of(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): str(value) for key, value in mapping.items()}
