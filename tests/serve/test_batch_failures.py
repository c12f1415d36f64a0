"""A request the model refuses, merged into a batch with good ones, fails alone."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import numpy as np
import pytest
from traffic import fire

# Three one-row requests fill a batch; the long delay means they are always merged,
# since the batch only runs once it is full.
THREE_PER_BATCH = """
max_batch_size: 3
dynamic_batching { max_queue_delay_microseconds: 60000000 }
instance_group [ { count: 1 } ]
"""


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.embedding(rows=10), repo, "lookup", config=THREE_PER_BATCH)
    return module_server(repo)


def ids_body(ids: list[int]) -> dict:
    return {"inputs": [{"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": ids}]}


def test_one_bad_request_in_a_batch_does_not_fail_its_neighbours(server):
    good_first, bad, good_last = [1, 2], [4, 99], [7, 3]  # 99: no such row
    responses = fire(
        server.url, "lookup", [ids_body(good_first), ids_body(bad), ids_body(good_last)]
    )
    for ids, response in ((good_first, responses[0]), (good_last, responses[2])):
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["shape"] == [1, 2, 3]
        np.testing.assert_array_equal(output["data"], np.repeat(ids, 3))
    assert responses[1].status_code == 400
    error = responses[1].json()["error"]
    assert "rejected the input" in error
    assert "99" in error
    (stats,) = httpx.get(f"{server.url}/v2/models/lookup/stats").json()["model_stats"]
    assert stats["inference_stats"]["success"]["count"] == 2
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert stats["inference_count"] == 2
