"""A version's live state on this server, read from the statistics the server already
keeps (the same `ModelStats` and engine metrics that /metrics exposes), so the page
and a dashboard never disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiaas.errors import AiaasError
from aiaas.serve.repository import ModelRepository, ModelVersion
from aiaas.serve.stats import LATENCY_BUCKETS_S


@dataclass(frozen=True, slots=True)
class LiveState:
    loaded: bool
    state: str
    reason: str = ""
    requests: int = 0
    failures: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    queue_depth: int = 0
    generates_text: bool = False


def live_state(repository: ModelRepository, name: str, version: int) -> LiveState:
    """Loaded or not (and why not), request counts, latency quantiles, queue depth."""
    try:
        loaded = repository.get(name, str(version))
    except AiaasError:
        return LiveState(False, *_not_loaded(repository, name))
    if loaded.engine is not None:
        return _engine_state(loaded)
    stats = loaded.stats
    buckets = stats.latency_buckets
    return LiveState(
        loaded=True,
        state="READY",
        requests=stats.success.count,
        failures=stats.fail.count,
        p50_ms=_ms(histogram_quantile(0.5, LATENCY_BUCKETS_S, buckets)),
        p99_ms=_ms(histogram_quantile(0.99, LATENCY_BUCKETS_S, buckets)),
        queue_depth=loaded.batcher.queue_depth,
    )


def _engine_state(loaded: ModelVersion) -> LiveState:
    engine = loaded.engine
    assert engine is not None
    metrics = engine.metrics
    with metrics.lock:
        finished = dict(metrics.request_success)
        e2e = metrics.e2e_request_latency
        bounds, counts = e2e.bounds, list(e2e.counts)
    return LiveState(
        loaded=True,
        state="READY",
        requests=finished.get("stop", 0) + finished.get("length", 0),
        failures=finished.get("abort", 0),
        p50_ms=_ms(histogram_quantile(0.5, bounds, counts)),
        p99_ms=_ms(histogram_quantile(0.99, bounds, counts)),
        queue_depth=engine.num_waiting,
        generates_text=True,
    )


def _not_loaded(repository: ModelRepository, name: str) -> tuple[str, str]:
    for row in repository.index():
        if row["name"] == name and "version" not in row:
            return str(row["state"]), row.get("reason", "")
    return "NOT SERVED", "not served by this server"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """Prometheus' `histogram_quantile` over non-cumulative bucket counts (last is +Inf):
    linear within the bucket the quantile falls in; the +Inf bucket answers its lower
    bound. None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index > 0 else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]
