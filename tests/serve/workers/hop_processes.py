"""Engine processes for the hop's tests (``hop_engine.py``), started and awaited."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from processes import ROOT, LoggedProcess, server_env

from aiaas.errors import Unavailable

HERE = Path(__file__).resolve().parent
Answer = TypeVar("Answer")


def start_engine(
    repo: Path, address: str, log: Path, models: list[str], *flags: str, wait_for: str = "bound"
) -> LoggedProcess:
    """The engine's process, returned once it prints ``wait_for`` (its address is bound)."""
    env = server_env()
    # The worktree's aiaas, also where an installed one points elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(HERE / "hop_engine.py"), str(repo), address, *models, *flags]
    process = LoggedProcess(command, log, env=env)
    deadline = time.monotonic() + 60
    while wait_for not in process.logs().split():
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"the engine did not start:\n{process.logs()}")
        time.sleep(0.05)
    return process


async def until_answered(
    call: Callable[..., Awaitable[Answer]], *args: Any, within_s: float = 60
) -> Answer:
    """The first answer to ``call`` once an engine is there to give it."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call(*args)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
