"""Recording exported and compressed models in the registry, with their lineage.

The registry (`aiaas.registry`) is optional at import time: only `--register` needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiaas.export.api import ExportReport


def register_file(
    path: Path,
    name: str,
    registry_uri: str | None,
    *,
    parents: Sequence[str] = (),
    recipe: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Register ``path`` as the next version of ``name``; returns its `models:/` URI."""
    from aiaas.registry import Registry

    with Registry.open(registry_uri) as registry:
        version = registry.register(
            name, path, parents=list(parents), recipe=recipe, metrics=metrics, tags=tags
        )
    if version.identical_to:  # a repeat is said, never made silently
        earlier = ", ".join(ref.uri for ref in version.identical_to)
        print(f"note: {version.uri} has the same files as {earlier} (same sha256)", file=sys.stderr)
    return version.uri


def register_export(
    report: ExportReport,
    name: str,
    registry_uri: str | None,
    recipe: Mapping[str, Any],
    parents: Sequence[str] = (),
) -> str:
    """Register an export; one of a registry version (``parents``) is its child. An ONNX
    model installed as it is has no parity numbers to record."""
    metrics = (
        {"max_abs_error": report.max_abs_error, "max_rel_error": report.max_rel_error}
        if report.batch_sizes
        else {}
    )
    full_recipe = {**recipe, "optimization": report.optimization}
    return register_file(
        report.path, name, registry_uri, parents=parents, recipe=full_recipe, metrics=metrics
    )
