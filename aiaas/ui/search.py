"""The catalogue's one search box: `mnist task=chat accuracy>0.97` as words (name),
tags (`key=value`) and metric comparisons (`key>number`).

Parsed here rather than by the registry's parser because a server without a registry
searches its model repository too, and must not load SQLAlchemy to do it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiaas.errors import InvalidArgument

#: Longest operators first, so `>=` is not read as `>` followed by `=...`.
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_METRIC = re.compile(r"([^<>=!]+)(>=|<=|!=|>|<)(.+)")
MAX_QUERY_CHARS = 1000


@dataclass(frozen=True, slots=True)
class MetricCondition:
    key: str
    op: str
    value: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        found = metrics.get(self.key)
        return found is not None and COMPARISONS[self.op](found, self.value)

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value:g}"


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: tuple[MetricCondition, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.words or self.tags or self.metrics)

    def name_matches(self, name: str) -> bool:
        """Every word is a case-insensitive part of the name."""
        lowered = name.lower()
        return all(word.lower() in lowered for word in self.words)

    def tags_match(self, *tag_sets: Mapping[str, str]) -> bool:
        """Each tag is found in one of the given sets (a version's or its model's)."""
        return all(any(tags.get(k) == v for tags in tag_sets) for k, v in self.tags.items())

    def metrics_match(self, metrics: Mapping[str, float]) -> bool:
        return all(condition.holds(metrics) for condition in self.metrics)


def parse_query(text: str) -> Query:
    """Split on whitespace; each term is a comparison, a tag or a word of the name."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"search is over {MAX_QUERY_CHARS} characters")
    words: list[str] = []
    tags: dict[str, str] = {}
    metrics: list[MetricCondition] = []
    for term in text.split():
        match = _METRIC.fullmatch(term)
        if match is not None:
            metrics.append(_condition(term, *match.groups()))
        elif "=" in term:
            key, _, value = term.partition("=")
            if not key:
                raise InvalidArgument(f"search term {term!r}: a tag is KEY=VALUE")
            tags[key] = value
        else:
            words.append(term)
    return Query(tuple(words), tags, tuple(metrics))


def _condition(term: str, key: str, op: str, number: str) -> MetricCondition:
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(
            f"search term {term!r}: {number!r} is not a number (e.g. accuracy>0.97)"
        ) from None
    if not math.isfinite(value):
        raise InvalidArgument(f"search term {term!r}: the number must be finite")
    return MetricCondition(key, op, value)
