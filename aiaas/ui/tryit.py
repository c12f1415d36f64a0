"""The try-it form's starting point: one V2 input per signature input, a variable
dimension taken as 1, filled with zeros (empty strings for BYTES), ready to edit."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from aiaas.tensors import TensorSpec

#: A bigger example would make a page nobody edits; the user types the shape then.
MAX_EXAMPLE_ELEMENTS = 4096


@dataclass(frozen=True, slots=True)
class ExampleInput:
    name: str
    datatype: str
    shape_json: str
    data_json: str


def _zero(datatype: str) -> object:
    if datatype == "BYTES":
        return ""
    if datatype == "BOOL":
        return False
    return 0


def example_inputs(inputs: Sequence[TensorSpec]) -> list[ExampleInput]:
    examples = []
    for spec in inputs:
        shape = [1 if dim < 0 else dim for dim in spec.shape]
        count = math.prod(shape)
        data = [_zero(spec.datatype)] * count if count <= MAX_EXAMPLE_ELEMENTS else []
        examples.append(ExampleInput(spec.name, spec.datatype, json.dumps(shape), json.dumps(data)))
    return examples
