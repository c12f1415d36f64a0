"""torch.nn.Module -> ONNX with torch's dynamo exporter (torch.export + onnxscript).

The dynamo exporter is the one torch maintains; the TorchScript one is deprecated.
Its failures are long multi-part reports, so this module reduces them to one line
that names what the user can act on: the operator and the module it came from.

One gap remains: torch.export specialises the time axis of recurrent layers
(`nn.GRU`, `nn.LSTM`) to the example's length, so a dynamic sequence axis cannot
be kept. The TorchScript-based exporter records such layers as one ONNX GRU/LSTM
operator over any length; `to_onnx_torchscript` is the fallback for that case.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import onnx
import torch

from aiaas.errors import InvalidArgument
from aiaas.export.errors import ExportFailed, UnsupportedOperator
from aiaas.export.parity import binds_by_name

#: Opset the dynamo exporter targets natively (no version conversion pass).
OPSET = 20


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Keep torch's export chatter (progress prints, internal deprecations) off the user's
    terminal and out of pytest's warnings-as-errors; real failures still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def trace(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    dynamic_axes: Mapping[str, Sequence[int]],
) -> torch.export.ExportedProgram:
    """torch.export the model with the named inputs as keyword arguments."""
    shapes = {
        name: {axis: torch.export.Dim.DYNAMIC for axis in dynamic_axes.get(name, ())}
        for name in example_inputs
    }
    # torch.export specialises a size-1 dimension to a constant, so trace at batch 2.
    example_inputs = {
        name: tensor.repeat(2, *[1] * (tensor.dim() - 1)) if tensor.shape[0] == 1 else tensor
        for name, tensor in example_inputs.items()
    }
    try:
        with quiet_torch():
            if binds_by_name(model, example_inputs):
                return torch.export.export(model, (), dict(example_inputs), dynamic_shapes=shapes)
            return torch.export.export(
                model, tuple(example_inputs.values()), dynamic_shapes=tuple(shapes.values())
            )
    except TypeError as error:
        raise InvalidArgument(f"the model does not accept the inputs given: {error}") from None
    except Exception as error:  # torch.export raises many unrelated types
        hint = ""
        if "Constraints violated" in str(error):
            hint = (
                " (the model fixes the size of an axis that is exported as dynamic; a .pt2 "
                "program must itself have been exported with a dynamic batch dimension)"
            )
        raise ExportFailed(
            f"torch.export could not trace the model: {_first_line(error)}{hint}"
        ) from None


def to_onnx(
    program: torch.export.ExportedProgram,
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
) -> None:
    """Convert a traced program to an ONNX file with readable dynamic dimension names."""
    try:
        with quiet_torch():
            onnx_program = torch.onnx.export(program, (), verbose=False, opset_version=OPSET)
    except Exception as error:
        raise _conversion_error(error, program) from None
    if onnx_program is None:
        raise ExportFailed("torch.onnx.export returned no program")
    model = onnx_program.model_proto
    if len(model.graph.output) != len(output_names):
        raise InvalidArgument(
            f"{len(output_names)} output names given but the model has "
            f"{len(model.graph.output)} outputs"
        )
    rename_interface(model, input_names, output_names)
    name_dynamic_dims(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def pins_a_requested_axis(error: ExportFailed, dynamic_axes: Mapping[str, Sequence[int]]) -> bool:
    """torch.export refused to keep an axis dynamic, and axes beyond the batch were asked for
    (a model that fixes its batch size is the user's to fix, not the fallback's)."""
    extra = any(axis != 0 for axes in dynamic_axes.values() for axis in axes)
    return extra and "Constraints violated" in error.message


def to_onnx_torchscript(
    model: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: Path,
    dynamic_axes: Mapping[str, Sequence[int]],
    output_names: Sequence[str],
) -> None:
    """Export with torch's TorchScript-based exporter, dynamic axes named as `name_dynamic_dims`
    names them; every output's first axis is the batch."""
    axes: dict[str, dict[int, str]] = {
        name: {axis: "batch" if axis == 0 else f"{name}_{axis}" for axis in dynamic_axes[name]}
        for name in example_inputs
    }
    axes.update({name: {0: "batch"} for name in output_names})
    named = binds_by_name(model, example_inputs)
    try:
        with quiet_torch():
            torch.onnx.export(
                model,
                () if named else tuple(example_inputs.values()),
                str(path),
                kwargs=dict(example_inputs) if named else None,
                input_names=list(example_inputs),
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:
        raise ExportFailed(
            f"the TorchScript-based exporter failed too: {_first_line(error)}"
        ) from None


def rename_interface(
    model: onnx.ModelProto, input_names: Sequence[str], output_names: Sequence[str]
) -> None:
    """Give graph inputs and outputs the user's names.

    Names are set here rather than by the exporter, which can hand an output name
    to an internal value too (an `embedding` output collides with aten.embedding's
    result): an internal value holding a wanted name is moved aside first.
    """
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [value.name for value in model.graph.input if value.name not in initializers]
    graph_outputs = [value.name for value in model.graph.output]
    wanted: dict[str, str] = dict(zip(graph_inputs, input_names, strict=True))
    wanted.update(zip(graph_outputs, output_names, strict=True))
    taken = _all_names(model)
    moves: dict[str, str] = {}
    wanted_names: set[str] = {name for name in wanted.values() if name}
    for name in wanted_names & taken:
        if name not in wanted or wanted[name] != name:
            moves[name] = _unique(f"{name}_internal", taken)
    _rename(model, moves)
    _rename(model, {moves.get(old, old): new for old, new in wanted.items() if old != new})


def _all_names(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    names = {value.name for value in (*graph.input, *graph.output, *graph.value_info)}
    names |= {init.name for init in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _unique(base: str, taken: set[str]) -> str:
    candidate, counter = base, 0
    while candidate in taken:
        counter += 1
        candidate = f"{base}_{counter}"
    taken.add(candidate)
    return candidate


def _rename(model: onnx.ModelProto, renames: dict[str, str]) -> None:
    if not renames:
        return
    graph = model.graph
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        for names in (node.input, node.output):
            for index, name in enumerate(names):
                if name in renames:
                    names[index] = renames[name]


def name_dynamic_dims(model: onnx.ModelProto) -> None:
    """Rename torch's symbols (s77) to `batch` / `<input>_<axis>` so served shapes read well."""
    renames: dict[str, str] = {}
    for value in model.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param and dim.dim_param not in renames:
                renames[dim.dim_param] = "batch" if axis == 0 else f"{value.name}_{axis}"
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _conversion_error(error: BaseException, program: torch.export.ExportedProgram) -> Exception:
    chain = list(_causes(error))
    for cause in chain:
        match = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", str(cause))
        if match:
            operator = match.group(1)
            return UnsupportedOperator(
                f"operator {operator} {_origin(program, operator)}has no ONNX translation; "
                "rewrite that part with supported operations or register an ONNX function for it"
            )
    return ExportFailed(f"ONNX conversion failed: {_first_line(chain[-1])}")


def _origin(program: torch.export.ExportedProgram, operator: str) -> str:
    """Name the submodule that called the operator, from torch.export's module stack."""
    for node in program.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith(operator):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, kind = list(stack.values())[-1]
                kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
                return f"(called in module '{path or '<root>'}' of type {kind_name}) "
    return ""


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__
