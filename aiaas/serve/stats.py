"""Per model-version statistics: the one source of truth for both the statistics
extension and the Prometheus metrics, so the two can never disagree.

Durations follow Triton's meanings: ``success``/``fail`` count requests and their
end-to-end time in the server; ``queue`` and ``compute_*`` are accumulated per
successful request (a request in a batch of N is charged the batch's compute time);
``batch_stats`` counts executions per batch size with the batch's compute time.
All updates happen on the event loop thread, so plain integers suffice.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

#: Request-latency histogram bounds in seconds (Prometheus-style, +Inf implied).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ComputeTimes:
    """How long one batch took in each phase: merge inputs, run the model, split outputs."""

    input_ns: int
    infer_ns: int
    output_ns: int


@dataclass(slots=True)
class ModelStats:
    name: str
    version: str
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batch_stats: dict[int, BatchStats] = field(default_factory=dict)
    #: Cumulative-free bucket counts of request latency; last slot is +Inf.
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0

    def record_execution(self, batch_size: int, times: ComputeTimes) -> None:
        self.execution_count += 1
        self.inference_count += batch_size
        stats = self.batch_stats.get(batch_size)
        if stats is None:
            stats = self.batch_stats[batch_size] = BatchStats()
        stats.compute_input.add(times.input_ns)
        stats.compute_infer.add(times.infer_ns)
        stats.compute_output.add(times.output_ns)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_request_compute(self, queue_ns: int, times: ComputeTimes) -> None:
        self.queue.add(queue_ns)
        self.compute_input.add(times.input_ns)
        self.compute_infer.add(times.infer_ns)
        self.compute_output.add(times.output_ns)

    def record_request(self, ok: bool, duration_ns: int) -> None:
        (self.success if ok else self.fail).add(duration_ns)
        seconds = duration_ns / 1e9
        self.latency_sum_s += seconds
        for index, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                self.latency_buckets[index] += 1
                return
        self.latency_buckets[-1] += 1

    def to_dict(self) -> dict[str, Any]:
        """Every field, for an engine process that reports its model's statistics."""
        data = dataclasses.asdict(self)
        data["batch_stats"] = {str(size): batch for size, batch in data["batch_stats"].items()}
        return data

    def update_from(self, data: dict[str, Any]) -> None:
        """Take over another process's statistics of the same version (``to_dict``)."""
        for name, value in data.items():
            current = getattr(self, name)
            if isinstance(current, Duration):
                setattr(self, name, Duration(**value))
            elif name == "batch_stats":
                self.batch_stats = {
                    int(size): BatchStats(**{p: Duration(**d) for p, d in batch.items()})
                    for size, batch in value.items()
                }
            elif name == "latency_buckets":
                self.latency_buckets = [int(count) for count in value]
            elif name not in ("name", "version"):
                setattr(self, name, type(current)(value))


def _duration_json(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def statistics_json(stats: ModelStats) -> dict[str, object]:
    """Triton's statistics-extension form of one model version's statistics."""
    return {
        "name": stats.name,
        "version": stats.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration_json(stats.success),
            "fail": _duration_json(stats.fail),
            "queue": _duration_json(stats.queue),
            "compute_input": _duration_json(stats.compute_input),
            "compute_infer": _duration_json(stats.compute_infer),
            "compute_output": _duration_json(stats.compute_output),
            "cache_hit": {"count": 0, "ns": 0},
            "cache_miss": {"count": 0, "ns": 0},
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration_json(batch.compute_input),
                "compute_infer": _duration_json(batch.compute_infer),
                "compute_output": _duration_json(batch.compute_output),
            }
            for size, batch in sorted(stats.batch_stats.items())
        ],
        "memory_usage": [],
    }
