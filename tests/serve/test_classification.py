"""The classification extension: class_count returns the top-k as Triton's strings."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.http as httpclient

from aiaas.errors import InvalidArgument
from aiaas.serve.classification import top_k

LABELLED = """
output [{ name: "y" data_type: TYPE_FP32 dims: [4] label_filename: "labels.txt" }]
"""
SCORES = [[0.1, 0.9, 0.5, 0.2], [3.0, 1.0, 2.0, 0.0]]


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.identity("FP32"), repo, "labelled", config=LABELLED)
    (repo / "labelled" / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    models.save(models.identity("FP32"), repo, "plain")
    models.save(models.identity("FP32", dims=(4,)), repo, "unbatched", config="max_batch_size: 0")
    return module_server(repo)


def classify(server, model: str, scores, class_count) -> httpx.Response:
    array = np.array(scores, np.float32)
    body = {
        "inputs": [
            {"name": "x", "shape": list(array.shape), "datatype": "FP32", "data": array.tolist()}
        ],
        "outputs": [{"name": "y", "parameters": {"class_count": class_count}}],
    }
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def test_top_k_with_labels_over_json(server):
    response = classify(server, "labelled", SCORES, 2)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [2, 2]
    assert output["data"] == [
        "0.900000:1:dog", "0.500000:2:bird", "3.000000:0:cat", "2.000000:2:bird"
    ]  # fmt: skip


def test_top_k_without_labels_and_k_past_the_class_count(server):
    response = classify(server, "plain", SCORES[:1], 9)
    output = response.json()["outputs"][0]
    assert output["shape"] == [1, 4]
    assert output["data"] == ["0.900000:1", "0.500000:2", "0.200000:3", "0.100000:0"]


def test_an_unbatched_model_ranks_the_whole_tensor(server):
    response = classify(server, "unbatched", SCORES[1], 1)
    assert response.json()["outputs"][0] == {
        "name": "y", "datatype": "BYTES", "shape": [1], "data": ["3.000000:0"]
    }  # fmt: skip


def test_tritonclient_class_count(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    x = httpclient.InferInput("x", [2, 4], "FP32")
    x.set_data_from_numpy(np.array(SCORES, np.float32))
    for binary in (True, False):
        wanted = httpclient.InferRequestedOutput("y", binary_data=binary, class_count=1)
        result = client.infer("labelled", [x], outputs=[wanted]).as_numpy("y")
        # binary BYTES come back as bytes, JSON ones as str: tritonclient's own behaviour
        texts = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in result]
        assert texts == [["0.900000:1:dog"], ["3.000000:0:cat"]]
    client.close()


def test_a_bad_class_count_is_a_400(server):
    response = classify(server, "plain", SCORES, -1)
    assert response.status_code == 400
    assert "class_count must be a positive integer" in response.json()["error"]


def test_a_missing_label_file_makes_the_model_unavailable(tmp_path, start_server):
    repo = tmp_path / "repo"
    models.save(models.identity("FP32"), repo, "nolabels", config=LABELLED)
    server = start_server(repo)
    index = httpx.post(f"{server.url}/v2/repository/index").json()
    assert "label_filename: no file 'labels.txt'" in index[0]["reason"]


def test_top_k_ties_keep_the_lower_index_first():
    result = top_k(np.array([[1.0, 2.0, 2.0, 0.5]]), 3, None, batched=True)
    assert result.tolist() == [[b"2.000000:1", b"2.000000:2", b"1.000000:0"]]
    with pytest.raises(InvalidArgument, match="numeric tensor"):
        top_k(np.array([[b"a"]], dtype=np.object_), 1, None, batched=True)
