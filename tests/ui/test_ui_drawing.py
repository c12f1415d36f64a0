"""What the pages compute: the lineage graph's layout, a metric's chart, latency
quantiles from the server's histograms, and a version's trade-offs against its parent."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aiaas.serve.stats import LATENCY_BUCKETS_S
from aiaas.ui.catalogue import VersionInfo, best_metric
from aiaas.ui.live import LiveState, histogram_quantile
from aiaas.ui.svg import lineage_graph, metric_chart
from aiaas.ui.tradeoffs import tradeoff


@dataclass(frozen=True)
class Ref:
    name: str
    version: int


@dataclass(frozen=True)
class Node:
    ref: Ref
    exists: bool = True
    links: tuple = ()


def test_ancestors_are_drawn_left_and_descendants_right_with_an_edge_per_link():
    # trained -> pruned -> int8, and int8 -> int8-retuned; drawn from the int8 version
    trained = Node(Ref("digits", 1))
    pruned = Node(Ref("digits-pruned", 1), links=(trained,))
    retuned = Node(Ref("digits-int8", 2))
    graph = lineage_graph(Ref("digits-int8", 1), (pruned,), (retuned,))
    x = {(node.name, node.version): node.x for node in graph.nodes}
    assert (
        x[("digits", 1)] < x[("digits-pruned", 1)] < x[("digits-int8", 1)] < x[("digits-int8", 2)]
    )
    pairs = {
        ((e.parent.name, e.parent.version), (e.child.name, e.child.version)) for e in graph.edges
    }
    assert pairs == {
        (("digits", 1), ("digits-pruned", 1)),
        (("digits-pruned", 1), ("digits-int8", 1)),
        (("digits-int8", 1), ("digits-int8", 2)),
    }
    assert [node.current for node in graph.nodes].count(True) == 1
    assert all(node.x >= 0 and node.x + node.width <= graph.width for node in graph.nodes)
    assert all(node.y >= 0 and node.y + node.height <= graph.height for node in graph.nodes)


def test_two_parents_stack_in_one_column_and_a_deleted_one_is_marked():
    a, b = Node(Ref("a", 1)), Node(Ref("b", 3), exists=False)
    graph = lineage_graph(Ref("merged", 1), (a, b), ())
    placed = {(node.name, node.version): node for node in graph.nodes}
    assert placed[("a", 1)].x == placed[("b", 3)].x
    assert placed[("a", 1)].y != placed[("b", 3)].y
    assert not placed[("b", 3)].exists


def test_a_chart_puts_versions_in_order_and_higher_values_higher():
    chart = metric_chart("accuracy", [(3, 0.97), (1, 0.90), (2, 0.95)])
    assert [point.version for point in chart.points] == [1, 2, 3]
    xs = [point.x for point in chart.points]
    ys = [point.y for point in chart.points]
    assert xs == sorted(xs)
    assert ys == sorted(ys, reverse=True)  # SVG's y grows downwards
    assert (chart.low, chart.high) == (0.90, 0.97)


def test_a_chart_of_one_version_or_equal_values_stays_inside():
    for values in ([(1, 0.5)], [(1, 2.0), (2, 2.0)]):
        chart = metric_chart("m", values)
        assert all(0 < p.x < chart.width and 0 < p.y < chart.height for p in chart.points)


def test_quantiles_follow_prometheus_histogram_quantile():
    counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
    counts[LATENCY_BUCKETS_S.index(0.005)] = 50  # (0.0025, 0.005]
    counts[LATENCY_BUCKETS_S.index(0.1)] = 50  # (0.05, 0.1]
    assert histogram_quantile(0.5, LATENCY_BUCKETS_S, counts) == pytest.approx(0.005)
    assert histogram_quantile(0.99, LATENCY_BUCKETS_S, counts) == pytest.approx(0.05 + 0.05 * 0.98)
    assert histogram_quantile(0.5, LATENCY_BUCKETS_S, [0] * len(counts)) is None
    overflow = [0] * len(counts)
    overflow[-1] = 3
    assert histogram_quantile(0.5, LATENCY_BUCKETS_S, overflow) == LATENCY_BUCKETS_S[-1]


def test_tradeoffs_compare_size_latency_here_and_shared_metrics():
    parent = VersionInfo("digits", 2, size_bytes=4000, metrics={"accuracy": 0.97, "loss": 0.1})
    child = VersionInfo(
        "digits-int8", 1, size_bytes=1000, metrics={"accuracy": 0.96, "loss": 0.12, "x": 1}
    )
    result = tradeoff(child, parent, LiveState(True, "READY", p50_ms=1.0),
                      LiveState(True, "READY", p50_ms=4.0))  # fmt: skip
    changes = {change.what: change for change in result.changes}
    assert list(changes) == ["size", "p50 latency here", "accuracy", "loss"]
    assert changes["size"].ratio == 0.25
    assert changes["size"].better is True
    assert changes["p50 latency here"].better is True
    assert changes["accuracy"].delta == pytest.approx(-0.01)
    assert changes["accuracy"].better is False
    assert changes["loss"].better is False


def test_without_live_latency_on_both_the_tradeoff_leaves_it_out():
    parent, child = VersionInfo("a", 1, size_bytes=2), VersionInfo("b", 1, size_bytes=2)
    result = tradeoff(child, parent, LiveState(True, "READY", p50_ms=1.0), None)
    assert [change.what for change in result.changes] == ["size"]
    assert result.changes[0].better is None


def test_the_best_metric_is_the_largest_accuracy_and_the_smallest_loss():
    versions = [
        VersionInfo("m", 1, metrics={"accuracy": 0.9, "loss": 0.3}),
        VersionInfo("m", 2, metrics={"accuracy": 0.95, "loss": 0.2}),
        VersionInfo("m", 3, metrics={"accuracy": 0.93, "loss": 0.1}),
    ]
    assert best_metric(versions, ["accuracy"]) == ("accuracy", 0.95, 2)
    assert best_metric(versions, ["loss"]) == ("loss", 0.1, 3)
    assert best_metric(versions) == ("accuracy", 0.95, 2)  # the alphabetically first
    assert best_metric([VersionInfo("m", 1)]) is None
