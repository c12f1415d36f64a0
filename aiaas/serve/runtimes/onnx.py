"""ONNX Runtime: the default runtime. Knows ONNX and nothing about the wire.

One ``OnnxModel`` is one loaded model version: ``instance_count`` inference
sessions over the same file, so the batcher can run that many batches at once.
``run`` blocks; callers run it off the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument as OrtInvalidArgument

from aiaas import tensors
from aiaas.errors import InvalidArgument
from aiaas.serve.serving_config import RuntimeOptions
from aiaas.tensors import TensorSpec

#: Triton's optimization.graph.level -> ONNX Runtime's optimisation level.
_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


class OnnxModel:
    """Inference sessions for one model file."""

    def __init__(self, path: Path, runtime_options: RuntimeOptions) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = runtime_options.intra_op_threads
        options.inter_op_num_threads = runtime_options.inter_op_threads
        options.graph_optimization_level = _GRAPH_LEVELS.get(
            runtime_options.graph_optimization_level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        options.log_severity_level = 3
        for key, value in _spinning_entries(runtime_options.spinning).items():
            options.add_session_config_entry(key, value)
        try:
            self.sessions = [
                ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for _ in range(runtime_options.instance_count)
            ]
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise InvalidArgument(f"{path.name} is not a valid ONNX model: {error}") from None
        first = self.sessions[0]
        #: The file's metadata_props (where aiaas keeps a model's lineage record).
        self.custom_metadata = dict(first.get_modelmeta().custom_metadata_map)
        self.inputs = tuple(_spec(arg, "input") for arg in first.get_inputs())
        self.outputs = tuple(_spec(arg, "output") for arg in first.get_outputs())
        self._string_inputs = {spec.name for spec in self.inputs if spec.datatype == "BYTES"}

    def run(
        self, instance: int, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        feed = {
            name: _strings_for_ort(array) if name in self._string_inputs else array
            for name, array in inputs.items()
        }
        try:
            results = self.sessions[instance].run(list(output_names), feed)
        except OrtInvalidArgument as error:  # ONNX Runtime's verdict on the request's values
            raise InvalidArgument(f"the model rejected the input: {_first_line(error)}") from None
        return {
            name: _strings_from_ort(value) if value.dtype.kind in "OU" else value
            for name, value in zip(output_names, results, strict=True)
        }

    def close(self) -> None:
        self.sessions.clear()


def _spinning_entries(spinning: str) -> dict[str, str]:
    """ONNX Runtime's session config entries for one of ``serving_config.SPINNING_CHOICES``."""
    allow = "0" if spinning == "never" else "1"
    return {
        "session.intra_op.allow_spinning": allow,
        "session.inter_op.allow_spinning": allow,
        "session.force_spinning_stop": "1" if spinning == "run" else "0",
    }


def _spec(arg: Any, kind: str) -> TensorSpec:
    # ONNX Runtime writes "tensor(float)"; a sequence or map matches no element type.
    datatype = tensors.onnx_datatype(arg.type.removeprefix("tensor(").removesuffix(")"))
    if datatype is None or datatype not in tensors.DATATYPE_TO_NUMPY:
        raise InvalidArgument(f"model {kind} '{arg.name}' has type {arg.type}, which is not served")
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _strings_for_ort(array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    flat_in = array.reshape(-1)
    flat_out = out.reshape(-1)
    try:
        for index, item in enumerate(flat_in):
            flat_out[index] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError:
        raise InvalidArgument("a BYTES input for a string tensor is not valid UTF-8") from None
    return out


def _strings_from_ort(array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    flat_in = array.reshape(-1)
    flat_out = out.reshape(-1)
    for index, item in enumerate(flat_in):
        flat_out[index] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return out
