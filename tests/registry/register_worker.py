"""One of many processes registering versions of one model at once (concurrency test).

usage: register_worker.py REGISTRY_URI ARTIFACT_ROOT MODEL_FILE WORKER COUNT SYNC_DIR

Opens the registry (a fresh one: the workers race to migrate it too), says it is
ready, waits for the go file, then registers COUNT versions tagged with its
number and iteration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from aiaas.registry import Registry


def main() -> None:
    uri, root, model, worker, count, sync = sys.argv[1:]
    sync_dir = Path(sync)
    with Registry.open(uri, root) as registry:
        (sync_dir / f"ready-{worker}").touch()
        while not (sync_dir / "go").exists():
            time.sleep(0.01)
        for iteration in range(int(count)):
            registry.register("shared", model, tags={"worker": worker, "iteration": str(iteration)})


if __name__ == "__main__":
    main()
