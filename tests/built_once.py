"""Artifacts that several test folders (and pytest-xdist's workers) share, built once per
run: trained models, exports, conversions.

Under xdist every worker has a base temporary folder of its own, all in one parent: a
shared artifact lives in that parent, and a lock file makes one worker build it while the
others wait and then read it. A folder counts as built once its marker file is written,
so a build that failed half-way is redone, never read.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MARKER = ".built"


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base temporary folder of this run, the same for every xdist worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Held by one process at a time (pytest runs, xdist workers); released on exit."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(folder: Path, build: Callable[[Path], object]) -> Path:
    """`folder`, made by `build(folder)` unless an earlier call (any process) made it."""
    with exclusive(folder.with_name(folder.name + ".lock")):
        if not (folder / MARKER).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / MARKER).touch()
    return folder
