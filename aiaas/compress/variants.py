"""Model variants, their measurements, and the accuracy-guarded choice among them.

Selection is a pure function of the measurements, so it is tested without timing:
the fastest variant whose quality drop from the baseline is within the budget wins,
and the baseline itself is always a valid answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Which measurement "fastest" means: p50 latency at a batch size, or file size.
SELECT_BY = {"batch16": 16, "batch1": 1, "size": 0}


@dataclass(slots=True)
class Variant:
    name: str
    #: The ONNX file served for this variant.
    path: Path
    parent: str | None
    #: Steps from the original model to this one, each a JSON-able dict.
    recipe: list[dict[str, Any]]
    #: The plain (not ORT-optimised) export, for quantization; None for ONNX-only variants.
    quantizable_path: Path | None = None
    #: The PyTorch model, when there is one, for further PyTorch steps.
    module: Any = None
    #: Whether ONNX Runtime may optimise the graph when loading (False: the raw baseline).
    optimize_at_load: bool = True
    details: dict[str, Any] = field(default_factory=dict)
    metric: float | None = None
    #: Spearman correlation of pairwise similarities (embedding models only).
    spearman: float | None = None
    size_bytes: int = 0
    latency_ms: dict[int, float] = field(default_factory=dict)
    within_budget: bool | None = None

    def row(self, metric_name: str, baseline: Variant) -> dict[str, Any]:
        """The JSON report's entry."""
        return {
            "name": self.name,
            "parent": self.parent,
            "recipe": self.recipe,
            metric_name: self.metric,
            "spearman": self.spearman,
            "metric_drop": quality_drop(baseline, self),
            "size_bytes": self.size_bytes,
            "latency_p50_ms": {str(k): v for k, v in self.latency_ms.items()},
            "speedup_vs_baseline": {
                str(k): baseline.latency_ms[k] / v
                for k, v in self.latency_ms.items()
                if v > 0 and k in baseline.latency_ms
            },
            "within_budget": self.within_budget,
            "details": self.details,
        }


def quality_drop(baseline: Variant, variant: Variant) -> float:
    if baseline.metric is None or variant.metric is None:
        return float("nan")
    return baseline.metric - variant.metric


def select(
    variants: list[Variant], baseline: Variant, max_drop: float, select_by: str = "batch16"
) -> Variant:
    """Mark each variant in or out of budget; return the fastest (or smallest) one in."""
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}")
    for variant in variants:
        drop = quality_drop(baseline, variant)
        variant.within_budget = variant is baseline or (drop == drop and drop <= max_drop + 1e-12)
    candidates = [v for v in variants if v.within_budget]

    def cost(variant: Variant) -> float:
        if select_by == "size":
            return float(variant.size_bytes)
        return variant.latency_ms.get(SELECT_BY[select_by], float("inf"))

    return min(candidates, key=cost)
