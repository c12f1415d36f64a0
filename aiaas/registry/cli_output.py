"""How `aiaas models` shows things: rich tables and trees for people, `--json` for
programs (the same dicts the HTTP API returns)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.tree import Tree

from aiaas.registry.records import Lineage, LineageNode, ModelVersion, RegisteredModel

console = Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    # Plain print, not rich: a program reads this, and rich would wrap and colour it.
    print(json.dumps(data, indent=2, sort_keys=False))


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


def versions_table(versions: Iterable[ModelVersion]) -> Table:
    table = Table(
        Column("uri", no_wrap=True),
        Column("created", no_wrap=True),
        Column("size", no_wrap=True),
        Column("aliases", overflow="fold"),
        Column("metrics", overflow="fold"),
        Column("tags", overflow="fold"),
    )
    for version in versions:
        table.add_row(
            escape(version.uri),
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            _size(version.size_bytes),
            ", ".join(version.aliases),
            _kv(version.metrics),
            _kv(version.tags),
        )
    return table


def show_model(model: RegisteredModel, versions: list[ModelVersion]) -> None:
    console.print(f"[bold]{escape(model.name)}[/bold]  {escape(model.description or '')}")
    console.print(f"created {model.created_at:%Y-%m-%d %H:%M:%S} UTC, tags: {_kv(model.tags)}")
    console.print(f"aliases: {_kv(model.aliases) or '-'}")
    console.print(versions_table(versions))


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
