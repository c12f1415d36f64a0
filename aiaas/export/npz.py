"""Data files in NumPy's .npz format, the one format every command takes.

Conventions (documented in the README, under ".npz conventions"):
- inputs are stored under the model's input names; a one-input model may use `x`;
- labels (classification targets) are stored under `y`;
- every array shares the first (sample) axis.
Float64 arrays become float32, the dtype models are trained in.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aiaas.errors import InvalidArgument

LABELS = "y"


def read(path: Path, flag: str) -> dict[str, np.ndarray]:
    """All arrays of the file; a missing or unreadable file is the user's mistake."""
    if not path.is_file():
        raise InvalidArgument(f"{flag}: file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise InvalidArgument(f"{flag}: {path} is not a readable .npz file ({error})") from None
    if not arrays:
        raise InvalidArgument(f"{flag}: {path} holds no arrays")
    lengths = {name: array.shape[0] if array.ndim else 0 for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidArgument(f"{flag}: arrays in {path} differ in sample count: {lengths}")
    return {name: _float32(array) for name, array in arrays.items()}


def inputs(
    arrays: Mapping[str, np.ndarray], names: Sequence[str] | None, flag: str
) -> dict[str, np.ndarray]:
    """The model inputs of a file: the named ones, else every array but the labels."""
    candidates = {name: array for name, array in arrays.items() if name != LABELS}
    if names is None:
        if not candidates:
            raise InvalidArgument(f"{flag}: the file holds no input arrays (only '{LABELS}')")
        return candidates
    if len(names) == 1 and names[0] not in candidates and "x" in candidates:
        return {names[0]: candidates["x"]}
    missing = [name for name in names if name not in candidates]
    if missing:
        raise InvalidArgument(
            f"{flag}: the file has no array named {', '.join(repr(m) for m in missing)} "
            f"(it has {', '.join(repr(n) for n in arrays)})"
        )
    return {name: candidates[name] for name in names}


def labels(arrays: Mapping[str, np.ndarray], flag: str) -> np.ndarray:
    if LABELS not in arrays:
        raise InvalidArgument(
            f"{flag}: the file has no '{LABELS}' array of labels "
            f"(it has {', '.join(repr(n) for n in arrays)})"
        )
    return arrays[LABELS].astype(np.int64)


def _float32(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float64 else array
