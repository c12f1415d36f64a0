"""What users type: `k=v` tags, `accuracy=0.981` metrics, `accuracy>0.97` filters and
JSON objects. Pure functions; every mistake is an InvalidArgument naming the input."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from aiaas.errors import InvalidArgument
from aiaas.registry.records import MetricFilter
from aiaas.registry.schema import TAG_KEY_MAX, TAG_VALUE_MAX

_FILTER = re.compile(r"\s*([^<>=!\s][^<>=!]*?)\s*(>=|<=|!=|==|>|<|=)\s*(\S.*?)\s*")


def check_key(key: str, what: str = "tag") -> str:
    if not key or len(key) > TAG_KEY_MAX or key != key.strip() or "\x00" in key:
        raise InvalidArgument(
            f"invalid {what} key {key!r}: 1-{TAG_KEY_MAX} characters, no surrounding spaces"
        )
    return key


def check_tag(key: str, value: str) -> tuple[str, str]:
    check_key(key)
    if not isinstance(value, str) or len(value) > TAG_VALUE_MAX or "\x00" in value:
        raise InvalidArgument(f"invalid value for tag {key!r}: at most {TAG_VALUE_MAX} characters")
    return key, value


def check_metric(key: str, value: object) -> tuple[str, float]:
    check_key(key, "metric")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"metric {key!r} must be a finite number, not {value!r}")
    return key, float(value)


def _split(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid {what} {text!r}: expected KEY=VALUE")
    return key, value


def parse_tags(items: Iterable[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, value = check_tag(*_split(item, "tag"))
        if key in tags:
            raise InvalidArgument(f"tag {key!r} is given twice")
        tags[key] = value
    return tags


def parse_metrics(items: Iterable[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for item in items:
        key, text = _split(item, "metric")
        try:
            number = float(text)
        except ValueError:
            raise InvalidArgument(f"metric {key!r}: {text!r} is not a number") from None
        key, value = check_metric(key, number)
        if key in metrics:
            raise InvalidArgument(f"metric {key!r} is given twice")
        metrics[key] = value
    return metrics


def parse_metric_filter(text: str) -> MetricFilter:
    """`accuracy>0.97`, `loss <= 0.2`, `f1=0.9`: a metric, a comparison and a number."""
    match = _FILTER.fullmatch(text)
    if match is None:
        raise InvalidArgument(
            f"invalid metric filter {text!r}: expected e.g. 'accuracy>0.97' "
            "(comparisons: < <= = != >= >)"
        )
    key, op, number = match.groups()
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(
            f"invalid metric filter {text!r}: {number!r} is not a number"
        ) from None
    check_metric(key, value)
    return MetricFilter(key, "=" if op == "==" else op, value)


def parse_json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{flag}: not valid JSON ({error})") from None
    return check_json_object(value, flag)


def check_json_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: expected a JSON object, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"{what}: not representable as JSON ({error})") from None
    return value
