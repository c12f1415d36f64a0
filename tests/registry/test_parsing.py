"""What users type on the command line: tags, metrics, metric filters, JSON objects."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.errors import InvalidArgument
from aiaas.registry.parsing import (
    parse_json_object,
    parse_metric_filter,
    parse_metrics,
    parse_tags,
)
from aiaas.registry.records import MetricFilter


def test_tags_split_at_the_first_equals_sign():
    assert parse_tags(["team=vision", "query=a=b", "empty="]) == {
        "team": "vision",
        "query": "a=b",
        "empty": "",
    }


@pytest.mark.parametrize(
    "items", [["novalue"], ["=v"], [" k=v"], ["k=1", "k=2"], ["k" * 251 + "=v"]]
)
def test_bad_tags_are_refused(items):
    with pytest.raises(InvalidArgument):
        parse_tags(items)


def test_metrics_are_finite_numbers():
    assert parse_metrics(["accuracy=0.981", "loss=1e-3", "epochs=3"]) == {
        "accuracy": 0.981,
        "loss": 0.001,
        "epochs": 3.0,
    }
    for bad in (["acc=high"], ["acc=nan"], ["acc=inf"], ["acc"]):
        with pytest.raises(InvalidArgument):
            parse_metrics(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy>0.97", MetricFilter("accuracy", ">", 0.97)),
        ("accuracy >= 0.97", MetricFilter("accuracy", ">=", 0.97)),
        ("loss<=2", MetricFilter("loss", "<=", 2.0)),
        ("loss<2", MetricFilter("loss", "<", 2.0)),
        ("f1=0.5", MetricFilter("f1", "=", 0.5)),
        ("f1==0.5", MetricFilter("f1", "=", 0.5)),
        ("f1!=0.5", MetricFilter("f1", "!=", 0.5)),
        ("top-1 accuracy > -1e3", MetricFilter("top-1 accuracy", ">", -1000.0)),
    ],
)
def test_metric_filters(text, expected):
    assert parse_metric_filter(text) == expected


@pytest.mark.parametrize("text", ["accuracy", ">0.9", "accuracy>", "accuracy>>1", "a=>1", "a>x"])
def test_bad_metric_filters_are_refused(text):
    with pytest.raises(InvalidArgument):
        parse_metric_filter(text)


keys = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(keys, st.sampled_from(["<", "<=", "=", "!=", ">=", ">"]), finite)
def test_metric_filters_round_trip(key, op, value):
    parsed = parse_metric_filter(f"{key}{op}{value!r}")
    assert parsed == MetricFilter(key, op, value)
    assert not math.isnan(parsed.value)


def test_json_objects():
    assert parse_json_object('{"lr": 0.1}', "--params-json") == {"lr": 0.1}
    assert parse_json_object(None, "--params-json") is None
    for bad in ("{", "[1]", "3", "NaN"):
        with pytest.raises(InvalidArgument, match="--params-json"):
            parse_json_object(bad, "--params-json")
