"""Client traffic shared by the tests that change what is served under load: version
swaps by polling, alias moves in the registry. Models are tests/models.py's
add_constant(v), so every answer says which version computed it."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def infer(client: httpx.Client, name: str, x: np.ndarray) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    return client.post(f"/v2/models/{name}/infer", json=body)


def fire(url: str, model: str, bodies: list[dict]) -> list[httpx.Response]:
    """Send all bodies at once, each from its own thread, released together."""
    start = threading.Barrier(len(bodies))

    def send(body: dict) -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            start.wait()
            return client.post(f"{url}/v2/models/{model}/infer", json=body)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


class VersionedTraffic:
    """``clients`` threads sending requests in a loop until the block ends.

    Each answer must equal x + the version it names (checked on the spot); ``latest``
    holds each client's last version, ``seen`` every client's versions in order, and
    ``failures`` the bodies of any non-200 answers.
    """

    def __init__(self, url: str, model: str, clients: int = 8) -> None:
        self.url = url
        self.model = model
        self.latest = [0] * clients
        self.failures: list[str] = []
        self.seen: list[list[int]] = []
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._loop, seed) for seed in range(clients)]

    def __enter__(self) -> VersionedTraffic:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self.seen = [future.result() for future in self._futures]
        self._pool.shutdown()

    def everyone_on(self, version: int, timeout: float = 60.0) -> None:
        """Traffic on the current version for a while, then every client on ``version``."""
        time.sleep(1.0)
        wait_for(lambda: self.latest == [version] * len(self.latest), timeout)

    def _loop(self, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        seen: list[int] = []
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                x = rng.normal(size=(1 + seed % 3, 4)).astype(np.float32)
                response = infer(client, self.model, x)
                if response.status_code != 200:
                    self.failures.append(response.text)
                    continue
                body = response.json()
                version = int(body["model_version"])
                y = np.array(body["outputs"][0]["data"], np.float32).reshape(x.shape)
                # the answer is x + version: computed by the version it claims
                np.testing.assert_allclose(y - x, version, atol=1e-5)
                seen.append(version)
                self.latest[seed] = version
        return seen


def assert_clean_swaps(traffic: VersionedTraffic, versions: set[int]) -> None:
    """No failure, no client back on a retired version, every version answered."""
    assert traffic.failures == []
    for per_client in traffic.seen:
        assert per_client == sorted(per_client), "a client went back to a retired version"
    assert {v for per_client in traffic.seen for v in per_client} == versions
