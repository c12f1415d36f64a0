"""Named points in `register` where a test can make the process stop and wait to be
killed, to prove that a crash at any of them leaves the registry consistent.

Inert unless AIAAS_REGISTRY_TEST_PAUSE_AT names the point; nothing else reads it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "AIAAS_REGISTRY_TEST_PAUSE_AT"
PAUSE_FILE = "AIAAS_REGISTRY_TEST_PAUSE_FILE"

#: In the order `register` passes them.
POINTS = ("artifact-temp-written", "artifact-stored", "version-inserted", "committed")


def pause_point(name: str) -> None:
    """At the named point: write the marker file, then sleep until killed."""
    if os.environ.get(PAUSE_AT) != name:
        return
    marker = os.environ.get(PAUSE_FILE)
    if marker:
        Path(marker).write_text(name)
    while True:
        time.sleep(3600)
