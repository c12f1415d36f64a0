"""Client threads doing work in a loop until stopped, through a fault: add_sub requests
over REST through a server's death and restart (each answer checked; refused connections
counted, not raised), and the base the other fault tests' loads share."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Self

import httpx
import numpy as np


def add_sub_body(a: np.ndarray, b: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": n, "shape": list(v.shape), "datatype": "INT32", "data": v.ravel().tolist()}
            for n, v in (("a", a), ("b", b))
        ]
    }


def check_add_sub(response: httpx.Response, a: np.ndarray, b: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["sum"] == (a + b).ravel().tolist()
    assert outputs["difference"] == (a - b).ravel().tolist()


class LoadThreads:
    """Threads that each run `_loop(argument)` from the `with` block's start until its end,
    when they are told to stop and joined."""

    join_timeout_s = 60.0

    def __init__(self, arguments: Iterable[object]) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(a,)) for a in arguments]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.join_timeout_s)

    def _loop(self, argument: Any) -> None:
        raise NotImplementedError


class AddSubLoad(LoadThreads):
    def __init__(self, url: str, model: str = "add_sub", clients: int = 3) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.answered = 0
        self.connection_errors = 0
        self.wrong: list[str] = []
        super().__init__(range(clients))

    def _loop(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                a, b = (rng.integers(-100, 100, (2, 4), dtype=np.int32) for _ in range(2))
                try:
                    response = client.post(self.url, json=add_sub_body(a, b))
                except httpx.TransportError:
                    self.connection_errors += 1
                    self._stop.wait(0.02)
                    continue
                try:
                    check_add_sub(response, a, b)
                    self.answered += 1
                except AssertionError as error:
                    self.wrong.append(str(error))
