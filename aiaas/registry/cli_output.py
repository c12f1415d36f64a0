"""How `aiaas models` shows things: rich tables and trees for people, `--json` for
programs (the same dicts the HTTP API returns)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.tree import Tree

from aiaas.registry.records import (
    DeviceReport,
    Lineage,
    LineageNode,
    ModelVersion,
    RegisteredModel,
)

console = Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    # Plain print, not rich: a program reads this, and rich would wrap and colour it.
    print(json.dumps(data, indent=2, sort_keys=False))


def identical_note(version: ModelVersion) -> str:
    """One line for a version whose files an earlier version already has."""
    earlier = ", ".join(ref.uri for ref in version.identical_to)
    return f"note: {version.uri} has the same files as {earlier} (same sha256)"


def _kv(value: dict[str, Any]) -> str:
    """User text is escaped everywhere: a tag value like `[red]` must print as typed."""
    return escape(", ".join(f"{k}={v}" for k, v in value.items()))


def models_table(models: Iterable[RegisteredModel]) -> Table:
    table = Table("name", "versions", "latest", "aliases", "tags", "description")
    for model in models:
        table.add_row(
            escape(model.name),
            str(model.version_count),
            str(model.latest_version or "-"),
            _kv(model.aliases),
            _kv(model.tags),
            escape(model.description or ""),
        )
    return table


def versions_table(versions: Iterable[ModelVersion], *, full_uri: bool = True) -> Table:
    """One line per version that fits the terminal (80 columns included): metrics rounded to
    4 significant digits, long cells cut with an ellipsis; `--json` has every value whole."""
    headers = ("uri" if full_uri else "version", "created", "size", "aliases", "metrics", "tags")
    rows = [
        (
            version.uri if full_uri else str(version.version),
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            _size(version.size_bytes),
            ", ".join(version.aliases),
            " ".join(f"{k}={v:.4g}" for k, v in version.metrics.items()),
            " ".join(f"{k}={v}" for k, v in version.tags.items()),
        )
        for version in versions
    ]
    natural = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    gaps = 2 * (len(headers) - 1)
    # Tags go first, metrics last: they are what one compares versions by.
    cut_order = [(5, 8), (3, 10), (0, 16), (4, 5)]
    widths = fit_widths(natural, cut_order, total=console.width - gaps)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, width=width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def fit_widths(natural: list[int], cut_order: list[tuple[int, int]], total: int) -> list[int]:
    """Column widths summing to at most `total`: the columns of `cut_order` (index, floor)
    give up width in that order down to their floors, then the widest of them goes, a
    character at a time, down to 5; the other columns keep their width."""
    widths = list(natural)
    for index, floor in cut_order:
        widths[index] -= max(0, min(sum(widths) - total, widths[index] - floor))
    cuttable = [index for index, _ in cut_order]
    while sum(widths) > total:
        index = max(cuttable, key=lambda i: widths[i])
        if widths[index] <= 5:
            break
        widths[index] -= 1
    return widths


def show_model(
    model: RegisteredModel, versions: list[ModelVersion], devices: Sequence[DeviceReport] = ()
) -> None:
    console.print(f"[bold]{escape(model.name)}[/bold]  {escape(model.description or '')}")
    console.print(f"created {model.created_at:%Y-%m-%d %H:%M:%S} UTC, tags: {_kv(model.tags)}")
    console.print(f"aliases: {_kv(model.aliases) or '-'}")
    console.print(versions_table(versions, full_uri=False))
    if devices:
        console.print(devices_table(devices))


def devices_table(devices: Iterable[DeviceReport]) -> Table:
    """Which edge device runs which version, as each last reported."""
    table = Table(title="edge devices", box=None, pad_edge=False, header_style="bold")
    for header in ("device", "follows", "version", "state", "reported", "last error"):
        table.add_column(header, no_wrap=header != "last error", overflow="ellipsis")
    for device in devices:
        reported = device.reported_at
        table.add_row(
            escape(device.device_id),
            escape(device.model_uri),
            str(device.version or "-"),
            escape(device.state),
            f"{reported:%Y-%m-%d %H:%M}" if reported else "-",
            escape(device.last_error or ""),
        )
    return table


def show_version(version: ModelVersion) -> None:
    facts = Table.grid(padding=(0, 2))
    rows = [
        ("uri", version.uri),
        ("description", escape(version.description or "")),
        ("created", f"{version.created_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("sha256", version.sha256),
        ("size", _size(version.size_bytes)),
        ("aliases", ", ".join(version.aliases)),
        ("tags", _kv(version.tags)),
        ("metrics", _kv(version.metrics)),
        ("parents", ", ".join(parent.uri for parent in version.parents)),
        ("run", escape(f"{version.run_id or '-'} {json.dumps(version.params or {})}")),
        ("recipe", escape(json.dumps(version.recipe)) if version.recipe else ""),
    ]
    for key, value in rows:
        facts.add_row(f"[bold]{key}[/bold]", value)
    console.print(facts)
    signature = Table("", "name", "datatype", "shape", title="signature")
    for kind, specs in (("input", version.signature.inputs), ("output", version.signature.outputs)):
        for spec in specs:
            signature.add_row(kind, escape(spec.name), spec.datatype, str(list(spec.shape)))
    console.print(signature)
    files = Table(
        Column("path", overflow="fold"),
        Column("size", no_wrap=True),
        Column("sha256", overflow="fold"),
        title="files",
    )
    for item in version.files:
        files.add_row(escape(item.path), _size(item.size_bytes), item.sha256)
    console.print(files)


def lineage_tree(lineage: Lineage) -> Tree:
    tree = Tree(f"[bold]{lineage.version.uri}[/bold]")
    ancestors = tree.add("ancestors" if lineage.ancestors else "ancestors: none")
    _grow(ancestors, lineage.ancestors)
    descendants = tree.add("descendants" if lineage.descendants else "descendants: none")
    _grow(descendants, lineage.descendants)
    return tree


def _grow(branch: Tree, nodes: tuple[LineageNode, ...]) -> None:
    for node in nodes:
        label = node.ref.uri if node.exists else f"{node.ref.uri} [dim](deleted)[/dim]"
        _grow(branch.add(label), node.links)


def _size(size_bytes: int) -> str:
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
