"""The comparison table (rich, on stdout) and its JSON form."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aiaas.compress.variants import Variant, quality_drop


def as_json(
    variants: list[Variant],
    baseline: Variant,
    selected: Variant,
    metric_name: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "metric": metric_name,
        "baseline": baseline.name,
        "selected": selected.name,
        **settings,
        "variants": [variant.row(metric_name, baseline) for variant in variants],
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_plain) + "\n")


def print_table(
    variants: list[Variant],
    baseline: Variant,
    selected: Variant,
    metric_name: str,
    console: Console | None = None,
) -> None:
    table = Table(title=f"compression variants (baseline: {baseline.name}; quality: {metric_name})")
    for header in (
        "variant",
        metric_name,
        "drop",
        "size",
        "p50 b1 ms",
        "p50 b16 ms",
        "speedup b16",
        "budget",
    ):
        table.add_column(header, justify="left" if header == "variant" else "right")
    for variant in variants:
        b16 = variant.latency_ms.get(16)
        base16 = baseline.latency_ms.get(16)
        speedup = f"{base16 / b16:.2f}x" if b16 and base16 else "-"
        marker = "[bold green]* [/]" if variant is selected else "  "
        table.add_row(
            marker + variant.name,
            _number(variant.metric, 4),
            _number(quality_drop(baseline, variant), 4),
            _size(variant.size_bytes),
            _number(variant.latency_ms.get(1), 3),
            _number(b16, 3),
            speedup,
            "ok" if variant.within_budget else "over",
        )
    # A pipe or a log file gets a readable width instead of rich's 80-column default.
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
