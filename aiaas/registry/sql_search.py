"""`search --tag k=v --metric 'accuracy>0.97'` as one SQL query: every filter is an
EXISTS on the version, so filters combine with AND and never multiply rows."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, exists

from aiaas.registry.records import MetricFilter
from aiaas.registry.schema import MetricRow, ModelRow, VersionRow, VersionTagRow

#: One entry per MetricFilter.op (parsing turns `==` into `=`).
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}


def search_query(
    base: Select[Any],
    tags: dict[str, str],
    metrics: list[MetricFilter],
    name: str | None,
) -> Select[Any]:
    """`base` selects versions already joined with their model (`versions_query()`)."""
    query = base
    if name is not None:
        query = query.where(ModelRow.name == name)
    for key, value in tags.items():
        query = query.where(
            exists().where(
                VersionTagRow.version_id == VersionRow.id,
                VersionTagRow.key == key,
                VersionTagRow.value == value,
            )
        )
    for metric in metrics:
        compare = COMPARISONS[metric.op]
        query = query.where(
            exists().where(
                MetricRow.version_id == VersionRow.id,
                MetricRow.key == metric.key,
                compare(MetricRow.value, metric.value),
            )
        )
    return query.order_by(ModelRow.name, VersionRow.version)
