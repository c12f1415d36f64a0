"""Triton's classification extension: an output requested with a class count k (the
output parameter ``classification``, as tritonclient sends it, or ``class_count``)
comes back as the top-k entries of each batch item, as BYTES ``"<score>:<index>"``,
or ``"<score>:<index>:<label>"`` when config.pbtxt names a label file.

Scores are printed as C's ``%f`` (six decimals), exactly as Triton prints them, so
client code that parses Triton's strings parses these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aiaas.errors import InvalidArgument


def class_count(parameters: dict[str, object], output: str) -> int | None:
    """The requested k, or None when the output is wanted as it is."""
    value = parameters.get("classification", parameters.get("class_count"))
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(
            f"output '{output}': class_count must be a positive integer, got {value!r}"
        )
    return value


def top_k(scores: np.ndarray, k: int, labels: Sequence[str] | None, *, batched: bool) -> np.ndarray:
    """Top-k of each batch item (of the whole tensor when not batched), highest first."""
    if scores.dtype.kind not in "iuf" or scores.ndim == 0:
        raise InvalidArgument(
            f"class_count needs a numeric tensor with classes, not {scores.dtype} {scores.shape}"
        )
    rows = scores.reshape(scores.shape[0], -1) if batched else scores.reshape(1, -1)
    count = min(k, rows.shape[1])
    # Stable on ties: equal scores keep the lower index first, as a sort by score would.
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :count]
    result = np.empty(order.shape, dtype=np.object_)
    for row, indices in enumerate(order):
        for column, index in enumerate(indices):
            text = f"{float(rows[row, index]):f}:{index}"
            if labels is not None and index < len(labels):
                text += f":{labels[index]}"
            result[row, column] = text.encode()
    return result if batched else result.reshape(count)
