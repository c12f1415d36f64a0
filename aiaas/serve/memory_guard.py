"""Refusing a model too large for this host's memory before a session is created.

ONNX Runtime reads the whole graph and its weights into memory; a model bigger
than what the host has left would push it into swap or the OOM killer, taking
every other model down with it. The files' size on disk is a lower bound of what
a session needs, so a model whose files exceed the limit is refused with a reason.
"""

from __future__ import annotations

from pathlib import Path

from aiaas.errors import InvalidArgument

MEMINFO = Path("/proc/meminfo")
#: Without --max-model-bytes: this share of MemAvailable at load time.
DEFAULT_SHARE = 0.8


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def model_limit(max_model_bytes: int | None) -> int | None:
    """The setting if given, else a share of the memory available now (None: no limit)."""
    if max_model_bytes is not None:
        return max_model_bytes
    available = available_memory_bytes()
    return None if available is None else int(available * DEFAULT_SHARE)


def files_size(version_folder: Path) -> int:
    """The model file and its external data: every file of the version folder."""
    return sum(path.stat().st_size for path in version_folder.rglob("*") if path.is_file())


def check_fits(version_folder: Path, max_model_bytes: int | None) -> None:
    limit = model_limit(max_model_bytes)
    if limit is None:
        return
    size = files_size(version_folder)
    if size > limit:
        raise InvalidArgument(
            f"model files are {size} bytes, over the memory limit of {limit} bytes "
            "(--max-model-bytes; default 80% of MemAvailable)"
        )
