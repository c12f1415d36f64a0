"""Language-model metrics with vLLM's meanings, under the server's ``aiaas_`` prefix.

The engine thread records into ``EngineMetrics`` (plain numbers behind a lock); the
collector reads them at scrape time into the server's one Prometheus registry, with
the live gauges (running, waiting, KV cache use) asked of each loaded engine.
Counters live per model version in the repository, so a reload does not reset them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: vLLM's bounds for time to first token and end-to-end latency, in seconds.
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                  2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
ITL_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
E2E_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort")
LABELS = ["model", "version"]


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class EngineMetrics:
    """What one model version's engine has done, recorded from its thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.time_to_first_token = Histogram(TTFT_BUCKETS_S)
        self.inter_token_latency = Histogram(ITL_BUCKETS_S)
        self.e2e_request_latency = Histogram(E2E_BUCKETS_S)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.request_success = dict.fromkeys(FINISH_REASONS, 0)

    def first_token(self, seconds: float, prompt_tokens: int) -> None:
        with self.lock:
            self.time_to_first_token.observe(seconds)
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += 1

    def next_token(self, seconds: float) -> None:
        with self.lock:
            self.inter_token_latency.observe(seconds)
            self.generation_tokens += 1

    def finished(self, reason: str, seconds: float) -> None:
        with self.lock:
            self.e2e_request_latency.observe(seconds)
            self.request_success[reason] = self.request_success.get(reason, 0) + 1


class LiveEngine(Protocol):
    """What the collector asks of a loaded engine at scrape time."""

    metrics: EngineMetrics

    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def kv_cache_usage(self) -> float: ...


#: (model, version, engine) for every loaded language model.
EngineSource = Callable[[], Iterable[tuple[str, str, LiveEngine]]]

_HISTOGRAMS = (
    ("aiaas_time_to_first_token_seconds", "Time from arrival to the first generated token",
     "time_to_first_token"),
    ("aiaas_inter_token_latency_seconds", "Time between two tokens of one sequence",
     "inter_token_latency"),
    ("aiaas_e2e_request_latency_seconds", "Time from arrival to the last token",
     "e2e_request_latency"),
)  # fmt: skip
_GAUGES = (
    ("aiaas_num_requests_running", "Sequences in the running batch", "num_running"),
    ("aiaas_num_requests_waiting", "Requests waiting to be admitted", "num_waiting"),
    ("aiaas_kv_cache_usage_perc", "KV cache in use (rows x padded length) over capacity, 0..1",
     "kv_cache_usage"),
)  # fmt: skip


class LLMCollector(Collector):
    def __init__(self, engines: EngineSource) -> None:
        self.engines = engines

    def collect(self) -> Iterator[Metric]:
        engines = list(self.engines())
        for name, documentation, attribute in _HISTOGRAMS:
            family = HistogramMetricFamily(name, documentation, labels=LABELS)
            for model, version, engine in engines:
                with engine.metrics.lock:
                    histogram: Histogram = getattr(engine.metrics, attribute)
                    family.add_metric([model, version], histogram.cumulative(), histogram.total)
            yield family
        for name, documentation, attribute in _GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=LABELS)
            for model, version, engine in engines:
                gauge.add_metric([model, version], float(getattr(engine, attribute)))
            yield gauge
        yield from self._counters(engines)

    def _counters(self, engines: list[tuple[str, str, LiveEngine]]) -> Iterator[Metric]:
        prompt = CounterMetricFamily(
            "aiaas_prompt_tokens", "Prompt tokens prefilled", labels=LABELS
        )
        generation = CounterMetricFamily(
            "aiaas_generation_tokens", "Tokens generated", labels=LABELS
        )
        success = CounterMetricFamily(
            "aiaas_request_success",
            "Finished generations by reason (stop, length, abort)",
            labels=[*LABELS, "finished_reason"],
        )
        for model, version, engine in engines:
            with engine.metrics.lock:
                prompt.add_metric([model, version], engine.metrics.prompt_tokens)
                generation.add_metric([model, version], engine.metrics.generation_tokens)
                for reason, count in engine.metrics.request_success.items():
                    success.add_metric([model, version, reason], count)
        yield prompt
        yield generation
        yield success
