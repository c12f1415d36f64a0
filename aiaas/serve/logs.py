"""The server's log format, shared by the single process and every process of a
`--workers` server (where a tag names which one wrote a line). Imports nothing of
ours but the settings, so the thin supervisor can use it."""

from __future__ import annotations

import logging

from aiaas.serve.settings import ServerSettings


def configure_logging(settings: ServerSettings, tag: str = "") -> None:
    # uvicorn's TRACE is level 5; logging knows the name only once uvicorn has logged.
    level = 5 if settings.log_level == "trace" else settings.log_level.upper()
    where = f" [{tag}]" if tag else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"
    )
