"""Geometry for the pages' inline SVG: a metric across versions and a lineage graph.

Only numbers and the records' own strings come out of here; the templates write the
SVG elements, so every name and label goes through Jinja's autoescaping like the rest
of the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

CHART_WIDTH, CHART_HEIGHT = 360, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 14, 30
#: Points keep this far from the axes, so a point on the lowest value is not on the axis.
_INSET = 10
NODE_WIDTH, NODE_HEIGHT = 168, 40
_COLUMN_GAP, _ROW_GAP, _MARGIN = 56, 18, 8


@dataclass(frozen=True, slots=True)
class ChartPoint:
    version: int
    value: float
    x: float
    y: float


@dataclass(frozen=True)
class MetricChart:
    metric: str
    points: tuple[ChartPoint, ...]
    low: float
    high: float
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = _LEFT
    top: int = _TOP
    bottom_y: int = CHART_HEIGHT - _BOTTOM

    @property
    def high_y(self) -> float:
        return float(self.top + _INSET)

    @property
    def low_y(self) -> float:
        return float(self.bottom_y - _INSET)

    @property
    def polyline(self) -> str:
        return " ".join(f"{point.x:.1f},{point.y:.1f}" for point in self.points)


def metric_chart(metric: str, values: Sequence[tuple[int, float]]) -> MetricChart:
    """One metric's value per version, versions evenly spaced left to right."""
    ordered = sorted(values)
    low = min(value for _, value in ordered)
    high = max(value for _, value in ordered)
    span = high - low
    plot_width = CHART_WIDTH - _LEFT - _RIGHT - 2 * _INSET
    plot_height = CHART_HEIGHT - _TOP - _BOTTOM - 2 * _INSET
    step = plot_width / max(len(ordered) - 1, 1)
    points = []
    for index, (version, value) in enumerate(ordered):
        x = _LEFT + _INSET + (index * step if len(ordered) > 1 else plot_width / 2)
        share = (value - low) / span if span else 0.5
        y = _TOP + _INSET + (1 - share) * plot_height
        points.append(ChartPoint(version, value, x, y))
    return MetricChart(metric, tuple(points), low, high)


class VersionKey(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...


class TreeNode(Protocol):
    """A registry lineage node: its version, whether it still exists, its next links."""

    @property
    def ref(self) -> VersionKey: ...

    @property
    def exists(self) -> bool: ...

    @property
    def links(self) -> Sequence[TreeNode]: ...


@dataclass(frozen=True, slots=True)
class GraphNode:
    name: str
    version: int
    exists: bool
    current: bool
    x: float
    y: float
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """Parent to child, drawn from the parent's right side to the child's left side."""

    parent: GraphNode
    child: GraphNode

    @property
    def path(self) -> str:
        x1, y1 = self.parent.x + self.parent.width, self.parent.y + self.parent.height / 2
        x2, y2 = self.child.x, self.child.y + self.child.height / 2
        middle = (x1 + x2) / 2
        return f"M{x1:.1f},{y1:.1f} C{middle:.1f},{y1:.1f} {middle:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


@dataclass(frozen=True)
class LineageGraph:
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    width: int
    height: int


@dataclass
class _Layout:
    depth: dict[tuple[str, int], int] = field(default_factory=dict)
    exists: dict[tuple[str, int], bool] = field(default_factory=dict)
    edges: set[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=set)

    def walk(self, node: TreeNode, depth: int, step: int, child_side: tuple[str, int]) -> None:
        """`step` -1 walks parents (edges point at `child_side`), +1 walks children."""
        key = (node.ref.name, node.ref.version)
        self.depth.setdefault(key, depth)
        self.exists[key] = node.exists
        self.edges.add((key, child_side) if step < 0 else (child_side, key))
        for link in node.links:
            self.walk(link, depth + step, step, key)


def lineage_graph(
    center: VersionKey, ancestors: Sequence[TreeNode], descendants: Sequence[TreeNode]
) -> LineageGraph:
    """Ancestors in columns to the left of the version, descendants to the right."""
    key = (center.name, center.version)
    layout = _Layout({key: 0}, {key: True})
    for node in ancestors:
        layout.walk(node, -1, -1, key)
    for node in descendants:
        layout.walk(node, 1, 1, key)
    columns: dict[int, list[tuple[str, int]]] = {}
    for item, depth in layout.depth.items():
        columns.setdefault(depth, []).append(item)
    first = min(columns)
    tallest = max(len(items) for items in columns.values())
    height = 2 * _MARGIN + tallest * NODE_HEIGHT + (tallest - 1) * _ROW_GAP
    placed: dict[tuple[str, int], GraphNode] = {}
    for depth, items in sorted(columns.items()):
        column_height = len(items) * NODE_HEIGHT + (len(items) - 1) * _ROW_GAP
        top = (height - column_height) / 2
        x = _MARGIN + (depth - first) * (NODE_WIDTH + _COLUMN_GAP)
        for row, item in enumerate(sorted(items)):
            y = top + row * (NODE_HEIGHT + _ROW_GAP)
            placed[item] = GraphNode(item[0], item[1], layout.exists[item], item == key, x, y)
    edges = tuple(
        GraphEdge(placed[parent], placed[child]) for parent, child in sorted(layout.edges)
    )
    width = 2 * _MARGIN + len(columns) * NODE_WIDTH + (len(columns) - 1) * _COLUMN_GAP
    nodes = tuple(sorted(placed.values(), key=lambda node: (node.x, node.y)))
    return LineageGraph(nodes, edges, width, height)
