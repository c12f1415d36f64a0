"""The accuracy guard: the fastest variant within budget wins, never one over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiaas.compress.variants import Variant, select


def _variant(name: str, metric: float, b16_ms: float, size: int = 100) -> Variant:
    variant = Variant(name, Path(f"{name}.onnx"), None, [])
    variant.metric, variant.size_bytes, variant.latency_ms = metric, size, {1: 1.0, 16: b16_ms}
    return variant


def test_the_fastest_variant_within_the_budget_is_chosen():
    baseline = _variant("fp32", 0.97, 10.0)
    variants = [baseline, _variant("int8", 0.965, 5.0), _variant("pruned", 0.962, 4.0)]
    assert select(variants, baseline, 0.01).name == "pruned"


def test_a_faster_variant_over_the_budget_is_rejected():
    baseline = _variant("fp32", 0.97, 10.0)
    broken = _variant("pruned-95", 0.50, 1.0)
    variants = [baseline, _variant("int8", 0.965, 5.0), broken]
    assert select(variants, baseline, 0.01).name == "int8"
    assert broken.within_budget is False


def test_the_baseline_wins_when_everything_else_breaks_the_budget():
    baseline = _variant("fp32", 0.97, 10.0)
    assert select([baseline, _variant("bad", 0.5, 1.0)], baseline, 0.01) is baseline


def test_selection_by_size():
    baseline = _variant("fp32", 0.97, 10.0, size=400)
    small = _variant("int8", 0.97, 12.0, size=100)
    assert select([baseline, small], baseline, 0.01, "size") is small


def test_an_unknown_criterion_is_refused():
    baseline = _variant("fp32", 0.97, 10.0)
    with pytest.raises(ValueError, match="select_by"):
        select([baseline], baseline, 0.01, "speed")
