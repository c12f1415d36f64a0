"""Lay an exported model out as a Triton model-repository entry that `aiaas serve` loads.

`<repository>/<name>/<version>/model.onnx` plus `<repository>/<name>/config.pbtxt`.
The config states the tensors explicitly (rather than leaving them to be completed
at load time) so the file documents the model and Triton itself accepts it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto

from aiaas.errors import InvalidArgument

MODEL_FILENAME = "model.onnx"
DEFAULT_MAX_BATCH_SIZE = 32

_CONFIG_TYPES: dict[int, str] = {
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.STRING: "TYPE_STRING",
}


def check_name(name: str) -> str:
    """A model name becomes a folder: refuse anything that could leave the repository."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise InvalidArgument(f"model name '{name}' is not a valid folder name")
    return name


def next_version(model_dir: Path) -> int:
    """One more than the highest numeric version folder (1 for a new model)."""
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def install(
    model_file: Path,
    repository: Path,
    name: str,
    version: int | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Path:
    """Copy an ONNX file into the repository as a new version; returns the model.onnx path."""
    model_dir = repository / check_name(name)
    chosen = next_version(model_dir) if version is None else version
    if chosen < 1:
        raise InvalidArgument(f"version must be >= 1, got {chosen}")
    target = model_dir / str(chosen) / MODEL_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if model_file.resolve() != target.resolve():
        shutil.copyfile(model_file, target)
    config = config_text(onnx.load(str(target), load_external_data=False), name, max_batch_size)
    (model_dir / "config.pbtxt").write_text(config)
    return target


def config_text(model: onnx.ModelProto, name: str, max_batch_size: int) -> str:
    """Triton config.pbtxt for the model; batched when every tensor's first axis is dynamic."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    outputs = list(model.graph.output)
    batched = max_batch_size > 0 and all(_dims(v)[:1] == [-1] for v in (*inputs, *outputs))
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size if batched else 0}",
    ]
    for kind, values in (("input", inputs), ("output", outputs)):
        for value in values:
            dims = _dims(value)[1:] if batched else _dims(value)
            lines += [
                f"{kind} {{",
                f'  name: "{value.name}"',
                f"  data_type: {_config_type(value)}",
                f"  dims: [ {', '.join(map(str, dims))} ]",
                "}",
            ]
    if batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [
        dim.dim_value if dim.HasField("dim_value") else -1
        for dim in value.type.tensor_type.shape.dim
    ]


def _config_type(value: onnx.ValueInfoProto) -> str:
    element = value.type.tensor_type.elem_type
    try:
        return _CONFIG_TYPES[element]
    except KeyError:
        type_name = TensorProto.DataType.Name(element)
        raise InvalidArgument(f"tensor '{value.name}' has type {type_name}, not servable") from None
