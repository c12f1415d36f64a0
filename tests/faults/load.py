"""Client threads sending add_sub requests over REST until stopped, through a server's
death and restart: each answer is checked; refused connections are counted, not raised."""

from __future__ import annotations

import threading

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


class AddSubLoad:
    def __init__(self, url: str, model: str = "add_sub", clients: int = 3) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.answered = 0
        self.connection_errors = 0
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(clients)]

    def __enter__(self) -> AddSubLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

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
