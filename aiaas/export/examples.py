"""Example inputs from the command line: `--example-shape NAME=1x3x224x224:FP32` or a .npz.

Shape-only examples are random: floats standard normal, integers in [0, 2) (valid
both as token ids and as masks), booleans random. Realistic integer inputs (token
ids of real text) come from a .npz file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aiaas.errors import InvalidArgument
from aiaas.export import npz

#: Rows of a .npz file used as export examples: enough for parity, quick to trace.
MAX_EXAMPLE_ROWS = 16

_DTYPES = {
    "FP32": torch.float32,
    "FP16": torch.float16,
    "FP64": torch.float64,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}
_SHAPE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)=(?P<dims>\d+(?:x\d+)*)(?::(?P<dtype>\w+))?$")


def from_shapes(specs: Sequence[str], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    examples: dict[str, torch.Tensor] = {}
    for spec in specs:
        match = _SHAPE.match(spec.strip())
        if not match:
            raise InvalidArgument(
                f"--example-shape '{spec}': expected NAME=DIMxDIM[:DTYPE], e.g. x=1x64:FP32"
            )
        dtype_name = (match["dtype"] or "FP32").upper()
        if dtype_name not in _DTYPES:
            raise InvalidArgument(
                f"--example-shape '{spec}': dtype {dtype_name} is not one of {', '.join(_DTYPES)}"
            )
        shape = tuple(int(dim) for dim in match["dims"].split("x"))
        if 0 in shape:
            raise InvalidArgument(f"--example-shape '{spec}': dimensions must be positive")
        examples[match["name"]] = _random(shape, _DTYPES[dtype_name], generator)
    return examples


def from_npz(path: Path, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    arrays = npz.inputs(npz.read(path, "--example-npz"), names, "--example-npz")
    return {
        name: torch.from_numpy(np.ascontiguousarray(array[:MAX_EXAMPLE_ROWS]))
        for name, array in arrays.items()
    }


def parse_dynamic_axes(specs: Sequence[str]) -> dict[str, list[int]]:
    """`input_ids=1` (repeatable; `NAME=1,2` for several) -> {"input_ids": [1]}."""
    axes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        try:
            numbers = [int(part) for part in raw.split(",")] if sep and name else None
        except ValueError:
            numbers = None
        if not numbers:
            raise InvalidArgument(f"--dynamic-axis '{spec}': expected NAME=AXIS, e.g. input_ids=1")
        axes.setdefault(name, []).extend(numbers)
    return axes


def _random(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, 2, shape, generator=generator).to(dtype)
