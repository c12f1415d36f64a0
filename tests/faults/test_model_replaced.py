"""A model file overwritten in place underneath a loaded model: ONNX Runtime holds the
graph in memory, so the loaded version keeps answering as it did; in poll mode a broken
replacement leaves the old version serving with the reason in the index, and a valid
one is picked up."""

from __future__ import annotations

import httpx
import models
import numpy as np
import onnx
from traffic import infer, wait_for

POLL = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")


def answer(client: httpx.Client, name: str = "m") -> list[float]:
    response = infer(client, name, np.zeros((1, 4), np.float32))
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def overwrite(path, content: bytes) -> None:
    """In place, as `cp new model.onnx` does: same inode, truncated then written."""
    with open(path, "r+b") as file:
        file.truncate(0)
        file.write(content)


def test_none_mode_keeps_serving_what_it_loaded(tmp_path, start_server):
    repo = tmp_path / "repo"
    path = models.save(models.add_constant(1), repo, "m", 1)
    server = start_server(repo)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert answer(client) == [1.0] * 4
        overwrite(path, b"garbage, not a model")
        assert answer(client) == [1.0] * 4
        overwrite(path, models.add_constant(7).SerializeToString())
        assert answer(client) == [1.0] * 4
        assert client.get("/v2/health/ready").status_code == 200
    assert "Traceback" not in server.logs()


def test_poll_mode_keeps_the_old_version_until_a_valid_replacement(tmp_path, start_server):
    repo = tmp_path / "repo"
    path = models.save(models.add_constant(1), repo, "m", 1)
    server = start_server(repo, *POLL)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert answer(client) == [1.0] * 4
        # half a model, as a copy interrupted midway leaves it
        whole = models.add_constant(2).SerializeToString()
        overwrite(path, whole[: len(whole) // 2])
        wait_for(lambda: "failed to load 'm'" in client.post("/v2/repository/index").text)
        row = next(r for r in client.post("/v2/repository/index").json() if r["name"] == "m")
        assert row["state"] == "READY"
        assert "version 1" in row["reason"]
        assert answer(client) == [1.0] * 4

        onnx.save(models.add_constant(3), path)
        wait_for(lambda: answer(client) == [3.0] * 4)
        row = next(r for r in client.post("/v2/repository/index").json() if r["name"] == "m")
        assert row == {"name": "m", "version": "1", "state": "READY", "reason": ""}
    assert "Traceback" not in server.logs()
