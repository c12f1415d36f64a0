"""A model too large for memory is refused before a session is built (--max-model-bytes),
with the sizes in the repository index; the other models keep serving."""

from __future__ import annotations

import httpx
import models
import numpy as np
import onnx
import pytest
from traffic import infer

from aiaas.errors import InvalidArgument
from aiaas.serve import memory_guard


def test_a_model_over_the_limit_is_refused_and_the_others_serve(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.add_constant(1), repo, "small", 1)
    big = models.add_constant(2)
    big.doc_string = "x" * 20_000  # the same graph, 20 kB larger on disk
    models.save(big, repo, "big", 1)
    limit = (repo / "small" / "1" / "model.onnx").stat().st_size + 1000
    assert (repo / "big" / "1" / "model.onnx").stat().st_size > limit
    server = start_server(repo, "--max-model-bytes", str(limit))
    x = np.zeros((1, 4), np.float32)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert infer(client, "small", x).json()["outputs"][0]["data"] == [1.0] * 4
        refused = client.post("/v2/models/big/infer", json={"inputs": []})
        assert refused.status_code in (400, 503)
        assert "error" in refused.json()
        rows = {row["name"]: row for row in client.post("/v2/repository/index").json()}
        assert rows["big"]["state"] == "UNAVAILABLE"
        assert "over the memory limit" in rows["big"]["reason"]
        assert str(limit) in rows["big"]["reason"]
        assert rows["small"]["state"] == "READY"
    assert "Traceback" not in server.logs()


def test_external_data_counts_towards_the_size(tmp_path):
    folder = tmp_path / "1"
    folder.mkdir()
    model = models.add_constant(3)
    onnx.save(model, folder / "model.onnx")
    (folder / "weights.bin").write_bytes(b"\0" * 5000)
    size = memory_guard.files_size(folder)
    assert size == (folder / "model.onnx").stat().st_size + 5000
    memory_guard.check_fits(folder, size)
    with pytest.raises(InvalidArgument, match="over the memory limit"):
        memory_guard.check_fits(folder, size - 1)


def test_the_default_limit_is_a_share_of_mem_available():
    available = memory_guard.available_memory_bytes()
    assert available is not None
    assert available > 0
    assert memory_guard.model_limit(None) <= available
    assert memory_guard.model_limit(123) == 123
