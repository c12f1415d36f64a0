"""What each page shows, computed from catalogue records and the server's state; the
templates only lay it out. Also the small formatting filters the templates use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiaas.serve.repository import ModelRepository
from aiaas.ui.catalogue import (
    Catalogue,
    ModelInfo,
    VersionInfo,
    best_metric,
    metric_series,
)
from aiaas.ui.live import live_state
from aiaas.ui.search import Query
from aiaas.ui.svg import LineageGraph, lineage_graph, metric_chart
from aiaas.ui.tradeoffs import Tradeoff, tradeoff
from aiaas.ui.tryit import example_inputs

#: The metric a list row shows when the search names none: the first a model has.
PREFERRED_METRICS = ("accuracy", "eval_accuracy", "top1", "f1", "auc", "bleu", "eval_loss")


@dataclass(frozen=True)
class ListRow:
    model: ModelInfo
    best: tuple[str, float, int] | None
    served_versions: tuple[int, ...]
    matching_versions: int


def served_versions(repository: ModelRepository) -> dict[str, tuple[int, ...]]:
    served: dict[str, list[int]] = {}
    for version in repository.loaded_versions():
        served.setdefault(version.name, []).append(version.version)
    return {name: tuple(sorted(numbers)) for name, numbers in served.items()}


def list_rows(
    models: Sequence[ModelInfo], query: Query, repository: ModelRepository
) -> list[ListRow]:
    """The models the query finds: every word in the name, and some version meeting
    every tag and metric term; the best metric is the query's first, when it has one."""
    served = served_versions(repository)
    prefer = (*(condition.key for condition in query.metrics), *PREFERRED_METRICS)
    rows = []
    for model in models:
        if not query.name_matches(model.name):
            continue
        matching = model.matching(query) if (query.tags or query.metrics) else list(model.versions)
        if (query.tags or query.metrics) and not matching:
            continue
        rows.append(
            ListRow(model, best_metric(matching, prefer), served.get(model.name, ()), len(matching))
        )
    return rows


def model_view(model: ModelInfo, repository: ModelRepository) -> dict[str, Any]:
    series = metric_series(model)
    return {
        "model": model,
        "versions": sorted(model.versions, key=lambda v: -v.version),
        "metric_names": list(series),
        "charts": [metric_chart(name, values) for name, values in series.items()],
        "served": served_versions(repository).get(model.name, ()),
    }


def version_view(
    catalogue: Catalogue,
    model: ModelInfo,
    number: int,
    parent_of: Callable[[str, int], VersionInfo | None],
) -> dict[str, Any]:
    """Blocking (lineage queries, the parents' records): what does not change by the second."""
    version = model.version(number)
    lineage = catalogue.lineage(model.name, number)
    graph: LineageGraph | None = None
    if lineage is not None and (lineage.ancestors or lineage.descendants):
        graph = lineage_graph(version, lineage.ancestors, lineage.descendants)
    parents = [parent_of(name, parent) for name, parent in version.parents]
    return {
        "model": model,
        "version": version,
        "graph": graph,
        "has_lineage": lineage is not None,
        "parents": [parent for parent in parents if parent is not None],
        "missing_parents": [
            ref for ref, found in zip(version.parents, parents, strict=True) if found is None
        ],
        "devices": catalogue.devices(model.name, number),
        "examples": example_inputs(version.inputs),
    }


def tradeoffs(
    repository: ModelRepository, version: VersionInfo, parents: Sequence[VersionInfo]
) -> list[Tradeoff]:
    live = live_state(repository, version.name, version.version)
    return [
        tradeoff(version, parent, live, live_state(repository, parent.name, parent.version))
        for parent in parents
    ]


def served_parameters(repository: ModelRepository, name: str, version: int) -> dict[str, Any]:
    """The `parameters` of the version's V2 metadata on this server (where it came from,
    its lineage summary...); empty when it is not served here."""
    for loaded in repository.loaded_versions():
        if loaded.name == name and loaded.version == version:
            return dict(loaded.parameters)
    return {}


def human_bytes(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


FILTERS: dict[str, Callable[..., str]] = {
    "human_bytes": human_bytes,
    "number": number,
    "signed": signed,
}
