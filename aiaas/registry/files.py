"""The files of a version: which ones `register` takes from PATH, and how `download`
lays them out again.

The ONNX file is always stored as `model.onnx`, the name Triton's layout (and so
the server) looks for; every other file keeps its path relative to PATH. A
version's sha256 is the sha256 of its manifest in `sha256sum` format, so
`sha256sum -c` can check a download by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from aiaas.errors import InvalidArgument
from aiaas.registry.records import ArtifactFile

MODEL_FILENAME = "model.onnx"


def collect(path: Path) -> dict[str, Path]:
    """Relative artifact path -> local file, for a file or a directory PATH."""
    if path.is_file():
        return {MODEL_FILENAME: path}
    if not path.is_dir():
        raise InvalidArgument(f"{path} is neither a file nor a directory")
    files: dict[str, Path] = {}
    for folder, subfolders, names in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                local = Path(folder, name)
                files[local.relative_to(path).as_posix()] = local
    return _with_model_name(files, path)


def _with_model_name(files: dict[str, Path], root: Path) -> dict[str, Path]:
    if MODEL_FILENAME in files:
        return files
    top_level = [name for name in files if "/" not in name and name.endswith(".onnx")]
    if len(top_level) != 1:
        found = ", ".join(top_level) or "none"
        raise InvalidArgument(
            f"{root} needs one ONNX file at its top level ({MODEL_FILENAME}, or a single *.onnx); "
            f"found {found}"
        )
    files[MODEL_FILENAME] = files.pop(top_level[0])
    return dict(sorted(files.items()))


def manifest_sha256(files: list[ArtifactFile]) -> str:
    manifest = "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(manifest.encode()).hexdigest()


def safe_relative(path: str) -> PurePosixPath:
    """A stored path that stays inside the download folder, whatever the database says."""
    relative = PurePosixPath(path)
    if (
        relative.is_absolute()
        or not relative.parts
        or ".." in relative.parts
        or "\\" in path
        or "\x00" in path
    ):
        raise InvalidArgument(f"refusing artifact path {path!r}: not a plain relative path")
    return relative


def materialize(dest: Path, fetch_into: Callable[[Path], None]) -> Path:
    """Fill a fresh staging folder with `fetch_into`, then rename it to `dest` in one step,
    so `dest` is either complete or absent; a failure leaves nothing behind."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidArgument(f"{dest} already exists and is not an empty directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    try:
        fetch_into(staging)
        if dest.is_dir():
            dest.rmdir()
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
