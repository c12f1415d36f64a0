"""Model files passed in a load request (Triton's ``file:<relative path>`` load
parameters), so a model can be deployed without access to the server's disk.

The files form a model folder of their own, in a fresh temporary directory; every
path is checked before anything is written, so a bad name cannot write outside it
(no ``..``, no absolute paths, no component longer than the filesystem allows)
and a rejected request leaves nothing behind, also when the disk fills midway.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from aiaas.errors import InvalidArgument, Unavailable

FILE_PREFIX = "file:"
#: Longest file or folder name most filesystems allow (ext4, xfs, tmpfs).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024


def passed_files(parameters: Mapping[str, object]) -> dict[str, bytes]:
    """The ``file:`` parameters, as relative path -> content (front ends decode the wire)."""
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        if not key.startswith(FILE_PREFIX):
            continue
        if not isinstance(value, bytes):
            raise InvalidArgument(f"parameter '{key}' must carry the file's bytes")
        files[key.removeprefix(FILE_PREFIX)] = value
    return files


def check_path(relative: str) -> PurePosixPath:
    """The path as given, if it stays inside the model folder and the filesystem can hold it."""
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or relative.startswith("\\"):
        raise InvalidArgument(f"file '{relative}': the path must be relative to the model folder")
    # The raw parts: PurePosixPath drops '.' and empty parts, which must not pass unseen.
    parts = relative.split("/")
    if any(part in ("..", ".", "") for part in parts) or "\x00" in relative or "\\" in relative:
        raise InvalidArgument(
            f"file '{relative}': '..', '.' and NUL are not allowed in a path "
            "(nor '\\' or empty parts)"
        )
    if len(relative.encode()) > MAX_PATH_BYTES:
        raise InvalidArgument(f"file path is longer than {MAX_PATH_BYTES} bytes")
    for part in path.parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(
                f"file '{relative[:64]}...': a name is longer than {MAX_NAME_BYTES} bytes"
            )
    return path


def write_model_folder(files: Mapping[str, bytes]) -> Path:
    """Write the files into a new temporary model folder; the caller removes it after
    the load (sessions hold the model in memory once built)."""
    checked = {check_path(relative): content for relative, content in files.items()}
    folder = Path(tempfile.mkdtemp(prefix="aiaas-load-"))
    try:
        for relative, content in checked.items():
            target = folder.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except OSError as error:
        # A full disk or a file size limit is the server's state, not the request's fault.
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(
            f"the server cannot store the passed files: {error.strerror or error}"
        ) from None
    return folder
