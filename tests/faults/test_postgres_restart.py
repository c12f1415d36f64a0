"""PostgreSQL restarted under registry load: writers register versions and move an
alias, readers list and resolve, while the cluster stops and starts again. The
registry reconnects by itself; every failure in the outage is the clean
"unavailable" kind (503 / exit 4), never a traceback; no version is lost or
duplicated."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import models
import onnx
import pytest
from load import LoadThreads
from ports import free_port
from processes import ROOT, server_env
from registry.pg_cluster import INSTALL_HINT, PostgresCluster, find_bin
from traffic import wait_for

from aiaas.errors import Unavailable
from aiaas.exit_codes import ExitCode
from aiaas.registry import Registry

pytestmark = pytest.mark.postgres
#: How long each phase may take (threads started, the outage seen, work resumed).
WAIT_S = 120.0


@pytest.fixture
def cluster():
    """A cluster of this test's own: stopping the session's would fail other tests."""
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    own = PostgresCluster(bin_dir, free_port())
    own.start()
    yield own
    own.stop()


class Load(LoadThreads):
    """Threads doing registry work in a loop until stopped, recording what happened."""

    join_timeout_s = 120.0

    def __init__(self, uri: str, root: str, model_file: Path) -> None:
        self.uri, self.root, self.model_file = uri, root, model_file
        self.registered: list[int] = []
        self.unavailable = 0
        self.other: list[BaseException] = []
        self.successes = 0
        self.opened = 0
        super().__init__(["register", "register", "alias", "read"])

    def _loop(self, job: str) -> None:
        with Registry.open(self.uri, self.root) as registry:
            self.opened += 1
            while not self._stop.is_set():
                try:
                    self._once(registry, job)
                    self.successes += 1
                except Unavailable:
                    self.unavailable += 1
                    time.sleep(0.05)
                except BaseException as error:
                    self.other.append(error)

    def _once(self, registry: Registry, job: str) -> None:
        if job == "register":
            self.registered.append(registry.register("m", self.model_file).version)
        elif job == "alias":
            latest = registry.versions("m")[-1].version
            registry.set_alias("m", "prod", latest)
        else:
            registry.resolve("models:/m@prod")


def test_registry_survives_a_postgres_restart_under_load(cluster, tmp_path):
    uri = cluster.create_database()
    root = str(tmp_path / "artifacts")
    model_file = tmp_path / "model.onnx"
    onnx.save(models.add_constant(1), model_file)
    with Registry.open(uri, root) as registry:
        registry.register("m", model_file)
        registry.set_alias("m", "prod", 1)
    env = {**server_env(), "AIAAS_REGISTRY_URI": uri, "AIAAS_ARTIFACT_ROOT": root}

    with Load(uri, root, model_file) as load:
        # every thread has opened its registry before the outage begins
        wait_for(lambda: load.opened == 4 and len(load.registered) >= 5, WAIT_S)
        cluster.pause()
        outage = subprocess.run(
            [sys.executable, "-m", "aiaas.cli", "models", "versions", "m"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        wait_for(lambda: load.unavailable >= 3, WAIT_S)
        cluster.resume()
        after = len(load.registered)
        wait_for(lambda: len(load.registered) >= after + 5, WAIT_S)

    assert load.other == [], [f"{type(e).__name__}: {e}" for e in load.other]
    assert outage.returncode == ExitCode.UNAVAILABLE, outage.stderr
    assert len(outage.stderr.splitlines()) == 1
    assert outage.stderr.startswith("error: ")
    assert "Traceback" not in outage.stderr
    with Registry.open(uri, root) as registry:
        stored = [v.version for v in registry.versions("m")]
        assert registry.resolve("models:/m@prod").version in stored
    # consecutive, each once; every register that reported success is among them
    assert stored == list(range(1, len(stored) + 1))
    assert len(load.registered) == len(set(load.registered))
    assert set(load.registered) <= set(stored)
