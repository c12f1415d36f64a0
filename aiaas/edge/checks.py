"""What a downloaded version must pass before the agent serves it: the bundle's manifest
and signature, the onnxruntime it needs, and one inference on a sample input.

Every failure is a `BundleRejected` with one line saying why; the agent refuses the
version and keeps serving the last good one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from packaging.version import InvalidVersion, Version

from aiaas.edge import manifest
from aiaas.edge.manifest import BundleRejected

MODEL_FILE = "model.onnx"

#: ONNX Runtime's type strings -> numpy dtypes, for building a sample input.
_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def check_version(folder: Path, public_key: Path | None) -> dict[str, Any] | None:
    """All checks on a staged version folder; returns its bundle manifest, if it has one.
    With a key, only a signed bundle passes; without one, a plain registry version does
    (its files were already checked against the registry's sha256s)."""
    bundle = (folder / manifest.MANIFEST).is_file()
    found = None
    if public_key is not None and not bundle:
        raise BundleRejected(f"not a signed bundle (no {manifest.MANIFEST}) and a key was given")
    if bundle:
        try:
            found = manifest.verify(folder, public_key)
        except BundleRejected as error:  # the staging path says nothing to the reader
            message = error.message.replace(f"{folder}: ", "").replace(f"{folder} ", "it ")
            raise BundleRejected(message) from None
        check_onnxruntime(found.get("min_onnxruntime"))
    sample_inference(folder / MODEL_FILE)
    return found


def check_onnxruntime(minimum: object) -> None:
    if minimum is None:
        return
    try:
        needed = Version(str(minimum))
    except InvalidVersion:
        raise BundleRejected(f"min_onnxruntime {minimum!r} is not a version") from None
    if Version(ort.__version__) < needed:
        raise BundleRejected(f"needs onnxruntime >= {needed}, this device has {ort.__version__}")


def sample_inference(model: Path) -> None:
    """Load the model as the server will and run it once on zeros (one row for every
    dimension the model leaves open): a model that cannot answer never goes live."""
    if not model.is_file():
        raise BundleRejected(f"no {MODEL_FILE} at the top of the version")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        feeds = {item.name: _zeros(item) for item in session.get_inputs()}
        session.run(None, feeds)
    except Exception as error:  # ONNX Runtime raises its own untyped errors
        text = str(error).strip()
        first = text.splitlines()[0][:240] if text else type(error).__name__
        raise BundleRejected(f"the sample inference failed: {first}") from None


def _zeros(item: Any) -> np.ndarray:
    dtype = _DTYPES.get(item.type)
    if dtype is None:
        raise BundleRejected(f"input {item.name!r} has type {item.type}, which we cannot sample")
    shape = [dim if isinstance(dim, int) and dim > 0 else 1 for dim in item.shape]
    if dtype is np.object_:
        return np.full(shape, "", dtype=np.object_)
    return np.zeros(shape, dtype=dtype)
