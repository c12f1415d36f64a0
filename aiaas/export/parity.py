"""Numerical parity between a PyTorch model and its ONNX export.

The check runs the user's example inputs and fresh inputs at several batch sizes,
because an export can be right at the traced batch size and wrong elsewhere (a
batch dimension baked into a Reshape is the classic); for the same reason every
dynamic axis beyond the batch (a sequence length) is also checked at another
length. The tolerance rule is numpy's allclose: an element fails when
|onnx - torch| > atol + rtol * |torch|.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

DEFAULT_BATCH_SIZES = (1, 3, 17)


@dataclass(frozen=True, slots=True)
class ParityResult:
    max_abs_error: float
    max_rel_error: float
    batch_sizes: tuple[int, ...]
    #: Where the worst violation of the tolerance happened, or None when within it.
    failure: str | None
    #: The other lengths the axes beyond the batch were checked at ("x[1]=13").
    other_lengths: tuple[str, ...] = ()


def invoke(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> Any:
    """Call the model with inputs by name, or in order when its parameters are named
    otherwise (``nn.Sequential`` takes ``input``; the user's data may say ``x``)."""
    if binds_by_name(model, inputs):
        return model(**inputs)
    return model(*inputs.values())


def binds_by_name(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> bool:
    try:
        inspect.signature(model.forward).bind(**inputs)
    except TypeError:
        return False
    return True


def flatten_outputs(outputs: Any) -> list[torch.Tensor]:
    """Outputs in the order the exporter writes them: a tensor, a sequence or a dict."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        return [t for value in outputs.values() for t in flatten_outputs(value)]
    if isinstance(outputs, list | tuple):
        return [t for value in outputs for t in flatten_outputs(value)]
    raise TypeError(f"model output of type {type(outputs).__name__} is not a tensor")


def session(path: Path, optimize: bool = False, threads: int = 1) -> ort.InferenceSession:
    """A CPU session; unoptimised by default so the file itself is what gets checked."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def random_batch(
    examples: Mapping[str, torch.Tensor], batch_size: int, generator: np.random.Generator
) -> dict[str, torch.Tensor]:
    """Fresh inputs shaped like the examples with another batch size.

    Floats are drawn around the examples' mean and spread; integer and boolean
    inputs (token ids, masks) reuse whole example rows, since arbitrary integers
    would not be valid ids or masks.
    """
    batch: dict[str, torch.Tensor] = {}
    for name, example in examples.items():
        array = example.detach().cpu().numpy()
        if array.dtype.kind == "f":
            spread = float(array.std()) or 1.0
            values = generator.normal(float(array.mean()), spread, (batch_size, *array.shape[1:]))
            batch[name] = torch.from_numpy(values.astype(array.dtype))
        else:
            rows = generator.integers(0, array.shape[0], batch_size)
            batch[name] = torch.from_numpy(np.ascontiguousarray(array[rows]))
    return batch


#: How much longer than the example an axis beyond the batch is made for the parity check.
LENGTH_STEP = 3


def other_lengths(
    examples: Mapping[str, torch.Tensor],
    dynamic_axes: Mapping[str, Sequence[int]],
    generator: np.random.Generator,
) -> tuple[str, dict[str, torch.Tensor]]:
    """The examples with every dynamic axis beyond the batch `LENGTH_STEP` longer.

    Floats are drawn fresh; integer and boolean inputs (ids, masks) repeat their own
    values along the axis, so that ids stay valid and inputs of equal length stay equal.
    """
    longer: dict[str, torch.Tensor] = {}
    labels = []
    for name, example in examples.items():
        array = example.detach().cpu().numpy()
        for axis in (axis for axis in dynamic_axes.get(name, ()) if axis != 0):
            length = array.shape[axis] + LENGTH_STEP
            labels.append(f"{name}[{axis}]={length}")
            if array.dtype.kind == "f":
                shape = (*array.shape[:axis], length, *array.shape[axis + 1 :])
                spread = float(array.std()) or 1.0
                array = generator.normal(float(array.mean()), spread, shape).astype(array.dtype)
            else:
                array = np.take(array, np.arange(length) % array.shape[axis], axis=axis)
        longer[name] = torch.from_numpy(np.ascontiguousarray(array))
    return ", ".join(labels), longer


def check(
    model: torch.nn.Module,
    path: Path,
    example_inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    *,
    atol: float,
    rtol: float,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    seed: int = 0,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
) -> ParityResult:
    """Compare the ONNX file against the model on the examples, on random batches and, for
    dynamic axes beyond the batch, on inputs of another length."""
    generator = np.random.default_rng(seed)
    ort_session = session(path)
    cases: list[tuple[str, Mapping[str, torch.Tensor]]] = [("example inputs", example_inputs)]
    cases += [(f"batch {n}", random_batch(example_inputs, n, generator)) for n in batch_sizes]
    label, longer = other_lengths(example_inputs, dynamic_axes or {}, generator)
    if label:
        cases.append((label, longer))
    checked = tuple(label.split(", ")) if label else ()
    worst_abs = worst_rel = 0.0
    failure: tuple[float, str] | None = None
    for label, inputs in cases:
        with torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in flatten_outputs(invoke(model, inputs))]
        feed = {name: tensor.detach().cpu().numpy() for name, tensor in inputs.items()}
        actual = ort_session.run(list(output_names), feed)
        for name, want, got in zip(output_names, expected, actual, strict=True):
            if want.shape != got.shape:
                return ParityResult(
                    worst_abs, worst_rel, tuple(batch_sizes),
                    f"{label}: output '{name}' has shape {list(got.shape)} in ONNX "
                    f"but {list(want.shape)} in PyTorch", checked,
                )  # fmt: skip
            abs_error, rel_error, excess = _errors(want, got, atol, rtol)
            worst_abs, worst_rel = max(worst_abs, abs_error), max(worst_rel, rel_error)
            if excess > 0 and (failure is None or excess > failure[0]):
                failure = (excess, f"{label}: output '{name}' max abs error {abs_error:.3g}")
    return ParityResult(
        worst_abs, worst_rel, tuple(batch_sizes), failure[1] if failure else None, checked
    )


def _errors(
    want: np.ndarray, got: np.ndarray, atol: float, rtol: float
) -> tuple[float, float, float]:
    """Max absolute error, max relative error, and how far the worst element is over budget."""
    if want.size == 0:
        return 0.0, 0.0, 0.0
    want64, got64 = want.astype(np.float64), got.astype(np.float64)
    if not np.array_equal(np.isnan(want64), np.isnan(got64)):
        return float("inf"), float("inf"), float("inf")
    want64, got64 = np.nan_to_num(want64), np.nan_to_num(got64)
    difference = np.abs(got64 - want64)
    # Relative to |torch| but floored at atol, so exact zeros do not make it infinite.
    relative = difference / np.maximum(np.abs(want64), atol if atol > 0 else 1e-12)
    excess = float(np.max(difference - (atol + rtol * np.abs(want64))))
    return float(difference.max()), float(relative.max()), excess
