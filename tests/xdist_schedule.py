"""How `make test TEST_WORKERS=2` shares the suite between pytest-xdist's workers.

The unit a worker takes is a test file, so a module's fixtures (its servers, mostly)
start once, as in a plain run. A folder in WHOLE_FOLDERS goes to one worker whole: its
session fixtures are costly to build twice. Units start longest first (LONGEST_FIRST,
from `--durations`), so that no long one is left running alone at the end; the Makefile
passes `--no-loadscope-reorder`, which keeps that order instead of xdist's own (most
tests first).
"""

from __future__ import annotations

from typing import Any

import pytest

#: Their tests share tests/train/conftest.py's training runs (baseline, ddp-2, fsdp-2 ...).
WHOLE_FOLDERS = ("tests/train/",)
#: The longest units of a quiet run, longest first; the rest follow in collection order.
LONGEST_FIRST = (
    "tests/test_readme.py",
    "tests/train/",
    "tests/serve/test_openai_api.py",
    "tests/export/test_llm_export.py",
    "tests/edge/test_chat_model_bundle.py",
)


def unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, or its folder in WHOLE_FOLDERS."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in WHOLE_FOLDERS if path.startswith(folder)), path)


def longest_first(items: list[pytest.Item]) -> None:
    """Reorder in place: the units of LONGEST_FIRST first, each keeping its own order."""

    def rank(item: pytest.Item) -> int:
        path = unit(item.nodeid)
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)  # stable: the order within a unit and among the rest is kept


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return ByUnit(config, log)
