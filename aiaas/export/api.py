"""The export API other packages call: PyTorch module in, parity-checked ONNX file out.

Every export is checked against PyTorch before it is returned, because a silent
numerical or shape error in a converted model surfaces only in production.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from aiaas.errors import InvalidArgument
from aiaas.export import convert, optimize, parity
from aiaas.export import repository as layout
from aiaas.export.errors import ExportFailed, ParityError
from aiaas.lineage import stamp_file


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: Path
    max_abs_error: float
    max_rel_error: float
    batch_sizes: tuple[int, ...]
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    #: ONNX Runtime optimisation level baked into the file: extended, basic or none.
    optimization: str = "none"
    #: Why a stronger optimisation level was not kept (parity broke), if it was not; why
    #: the TorchScript-based exporter was used, if it was.
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: torch's exporter that wrote the file: "dynamo" (torch.export), or "torchscript" where
    #: torch.export could not keep a requested axis dynamic (recurrent layers).
    exporter: str = "dynamo"
    #: Parity was also checked at these lengths of the axes beyond the batch ("x[1]=13").
    other_lengths: tuple[str, ...] = ()


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: Path,
    *,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    optimization: str = "extended",
    batch_sizes: Sequence[int] = parity.DEFAULT_BATCH_SIZES,
    unoptimized_copy: Path | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Export ``model`` to ``path`` with a dynamic batch axis on every input, check parity.

    ``dynamic_axes`` adds axes beyond the batch (``{"input_ids": [1]}``). Raises
    ``ParityError`` when outputs differ beyond ``atol + rtol * |torch|`` and
    ``UnsupportedOperator`` naming the operator and its module. ``unoptimized_copy``
    also keeps the plain export, which quantization wants (it cannot read fused
    ONNX Runtime operators). ``lineage`` is the record (`aiaas.lineage`) the written
    file carries: set on the file that passed parity, so the final file has it.
    """
    path = Path(path)
    if not example_inputs:
        raise InvalidArgument("at least one example input is needed")
    axes = _axes(example_inputs, dynamic_axes or {})
    inference_mode(model)
    names = _output_names(model, example_inputs, output_names)
    with tempfile.TemporaryDirectory(prefix="aiaas-export-") as workdir:
        raw = Path(workdir) / "raw.onnx"
        exporter, notes = _convert(model, example_inputs, axes, names, raw)
        baseline = parity.check(
            model, raw, example_inputs, names, atol=atol, rtol=rtol, batch_sizes=batch_sizes,
            dynamic_axes=axes,
        )  # fmt: skip
        if baseline.failure:
            raise ParityError(
                f"ONNX export differs from PyTorch beyond atol={atol:g}, rtol={rtol:g}: "
                f"{baseline.failure} (max rel error {baseline.max_rel_error:.3g})"
            )
        chosen, result = raw, baseline
        for level in optimize.levels_from(optimization):
            candidate = optimize.optimize(raw, Path(workdir) / f"{level}.onnx", level)
            checked = parity.check(
                model,
                candidate,
                example_inputs,
                names,
                atol=atol,
                rtol=rtol,
                batch_sizes=batch_sizes,
                dynamic_axes=axes,
            )
            if checked.failure is None:
                chosen, result, optimization = candidate, checked, level
                break
            notes.append(f"{level} optimisation dropped: {checked.failure}")
        else:
            optimization = "none"
        path.parent.mkdir(parents=True, exist_ok=True)
        if lineage is None:
            path.write_bytes(chosen.read_bytes())
        else:
            stamp_file(chosen, lineage, dest=path)
        if unoptimized_copy is not None:
            Path(unoptimized_copy).write_bytes(raw.read_bytes())
    return ExportReport(
        path=path,
        max_abs_error=result.max_abs_error,
        max_rel_error=result.max_rel_error,
        batch_sizes=result.batch_sizes,
        input_names=tuple(example_inputs),
        output_names=tuple(names),
        optimization=optimization,
        notes=tuple(notes),
        exporter=exporter,
        other_lengths=result.other_lengths,
    )


def _convert(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    axes: Mapping[str, Sequence[int]],
    names: Sequence[str],
    raw: Path,
) -> tuple[str, list[str]]:
    """Export to ``raw`` with the dynamo exporter, or with the TorchScript-based one where
    torch.export cannot keep a requested axis dynamic; returns which, and why if not dynamo."""
    try:
        program = convert.trace(model, example_inputs, axes)
    except ExportFailed as error:
        if not convert.pins_a_requested_axis(error, axes):
            raise
        convert.to_onnx_torchscript(model, example_inputs, raw, axes, names)
        found = re.search(r"Constraints violated[^!]*", error.message)
        reason = found.group(0) if found else error.message
        return "torchscript", [
            f"torch.export could not keep the requested dynamic axes ({reason}); exported "
            "with torch's TorchScript-based exporter (dynamo=False) instead"
        ]
    convert.to_onnx(program, raw, list(example_inputs), names)
    return "dynamo", []


def export_to_repository(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    repository: Path,
    name: str,
    version: int | None = None,
    *,
    max_batch_size: int = layout.DEFAULT_MAX_BATCH_SIZE,
    **options: Any,
) -> ExportReport:
    """Export into ``<repository>/<name>/<version>/model.onnx`` with its config.pbtxt.

    ``version`` defaults to one more than the newest one there; ``options`` are
    export_onnx's keyword arguments. The version folder appears only once parity passed.
    """
    model_dir = Path(repository) / layout.check_name(name)
    chosen = layout.next_version(model_dir) if version is None else version
    with tempfile.TemporaryDirectory(prefix="aiaas-export-") as workdir:
        staged = Path(workdir) / layout.MODEL_FILENAME
        report = export_onnx(model, example_inputs, staged, **options)
        target = layout.install(staged, Path(repository), name, chosen, max_batch_size)
    return replace(report, path=target)


def _axes(
    example_inputs: Mapping[str, torch.Tensor], extra: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """Batch axis 0 on every input plus the requested ones, validated against the shapes."""
    axes: dict[str, list[int]] = {}
    for name in extra:
        if name not in example_inputs:
            raise InvalidArgument(
                f"dynamic axis for unknown input '{name}' (inputs: {', '.join(example_inputs)})"
            )
    for name, tensor in example_inputs.items():
        if not isinstance(tensor, torch.Tensor):
            raise InvalidArgument(f"example input '{name}' is not a torch.Tensor")
        if tensor.dim() == 0:
            raise InvalidArgument(f"example input '{name}' is a scalar; it needs a batch axis")
        wanted = sorted({0, *extra.get(name, ())})
        for axis in wanted:
            if not 0 <= axis < tensor.dim():
                raise InvalidArgument(
                    f"dynamic axis {axis} of input '{name}' is outside its {tensor.dim()} axes"
                )
        axes[name] = wanted
    return axes


def _output_names(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    given: Sequence[str] | None,
) -> list[str]:
    """Run the model once (a shape mismatch is the user's mistake, found before tracing)
    and name its outputs: `output`, a dict's keys, or output_0, output_1, ..."""
    try:
        with torch.no_grad():
            outputs = parity.invoke(model, example_inputs)
        count = len(parity.flatten_outputs(outputs))
    except (RuntimeError, TypeError, ValueError, IndexError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidArgument(f"the example inputs do not fit the model: {first}") from None
    if given:
        if len(given) != count:
            raise InvalidArgument(f"{len(given)} output names given but the model has {count}")
        return list(given)
    if isinstance(outputs, Mapping) and len(outputs) == count:
        return [str(key) for key in outputs]
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def inference_mode(model: torch.nn.Module) -> None:
    """eval() for dropout and BatchNorm; a torch.export program's module refuses it and is
    in inference form already."""
    with contextlib.suppress(NotImplementedError):
        model.eval()
