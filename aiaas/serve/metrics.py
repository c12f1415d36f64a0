"""Prometheus metrics, read at scrape time from the same ModelStats the statistics
extension reports, so a dashboard and a client can never disagree.

Names follow Triton's metric meanings (nv_inference_request_success, ...) under an
``aiaas_`` prefix; every sample is labelled by model and version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aiaas.serve.llm.metrics import LLMCollector
from aiaas.serve.repository import ModelRepository, ModelVersion
from aiaas.serve.stats import LATENCY_BUCKETS_S

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ["model", "version"]

#: (metric name, help, value of one version's stats): the counters, in Triton's meanings.
_COUNTERS: list[tuple[str, str, Callable[[ModelVersion], float]]] = [
    ("aiaas_inference_request_success", "Successful inference requests",
     lambda v: v.stats.success.count),
    ("aiaas_inference_request_failure", "Failed inference requests",
     lambda v: v.stats.fail.count),
    ("aiaas_inference_count", "Inferences performed (each batch row counts)",
     lambda v: v.stats.inference_count),
    ("aiaas_inference_exec_count", "Model executions (batches) performed",
     lambda v: v.stats.execution_count),
    ("aiaas_inference_request_duration_us", "Cumulative end-to-end request time, successes",
     lambda v: v.stats.success.ns / 1000),
    ("aiaas_inference_queue_duration_us", "Cumulative time requests waited in the queue",
     lambda v: v.stats.queue.ns / 1000),
    ("aiaas_inference_compute_input_duration_us", "Cumulative time merging inputs",
     lambda v: v.stats.compute_input.ns / 1000),
    ("aiaas_inference_compute_infer_duration_us", "Cumulative time running the model",
     lambda v: v.stats.compute_infer.ns / 1000),
    ("aiaas_inference_compute_output_duration_us", "Cumulative time splitting outputs",
     lambda v: v.stats.compute_output.ns / 1000),
]  # fmt: skip


class ServerCollector(Collector):
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def collect(self) -> Iterator[Metric]:
        versions = self.repository.loaded_versions()
        for name, documentation, value in _COUNTERS:
            family = CounterMetricFamily(name.removesuffix("_total"), documentation, labels=LABELS)
            for version in versions:
                family.add_metric(_labels(version), value(version))
            yield family
        pending = GaugeMetricFamily(
            "aiaas_inference_pending_request_count",
            "Requests waiting in the queue now",
            labels=LABELS,
        )
        for version in versions:
            pending.add_metric(_labels(version), version.batcher.queue_depth)
        yield pending
        yield self._latency(versions)
        yield self._load_state()

    def _latency(self, versions: list[ModelVersion]) -> Metric:
        family = HistogramMetricFamily(
            "aiaas_inference_request_latency_seconds",
            "End-to-end request latency in the server, successes and failures",
            labels=LABELS,
        )
        for version in versions:
            stats = version.stats
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*LATENCY_BUCKETS_S, float("inf")), stats.latency_buckets, strict=True
            ):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            family.add_metric(_labels(version), buckets, stats.latency_sum_s)
        return family

    def _load_state(self) -> Metric:
        family = GaugeMetricFamily(
            "aiaas_model_ready",
            "1 for each model version that is loaded and serving, 0 for a model that failed",
            labels=LABELS,
        )
        for row in self.repository.index():
            family.add_metric(
                [row["name"], row.get("version", "")], 1 if row["state"] == "READY" else 0
            )
        return family


def _labels(version: ModelVersion) -> list[str]:
    return [version.name, str(version.version)]


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def build_registry(repository: ModelRepository) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(repository))
    registry.register(LLMCollector(repository.llm_engines))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
