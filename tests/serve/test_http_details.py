"""HTTP details Triton's clients depend on: compressed bodies both ways, JSON sent as
octet-stream or without a content type, an empty index body, unknown query parameters."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.http as httpclient
from hypothesis import given
from hypothesis import strategies as st

from aiaas.errors import InvalidArgument, PayloadTooLarge
from aiaas.serve.protocol import http_encoding

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "INT32", "data": [10, 20, 30, 40]},
    ]
}


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub")
    return module_server(repo, "--max-request-bytes", "100000")


def post(server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    # httpx asks for gzip by default and would decode it; read the raw bytes instead.
    headers = {"Accept-Encoding": "identity", **headers}
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/v2/models/add_sub/infer", content=body, headers=headers) as r,
    ):
        r.raw = b"".join(r.iter_raw())
        return r


def sums(payload: bytes) -> list[int]:
    outputs = {o["name"]: o for o in json.loads(payload)["outputs"]}
    return outputs["sum"]["data"]


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", lambda b: _raw_deflate(b))],
)
def test_compressed_requests_are_decoded(server, coding, compress):
    response = post(server, compress(json.dumps(BODY).encode()), {"Content-Encoding": coding})
    assert response.status_code == 200, response.raw
    assert sums(response.raw) == [11, 22, 33, 44]


@pytest.mark.parametrize(
    ("coding", "decompress"), [("gzip", gzip.decompress), ("deflate", zlib.decompress)]
)
def test_responses_are_compressed_when_the_client_accepts_it(server, coding, decompress):
    response = post(server, json.dumps(BODY).encode(), {"Accept-Encoding": f"br;q=0.9, {coding}"})
    assert response.headers["content-encoding"] == coding
    assert sums(decompress(response.raw)) == [11, 22, 33, 44]


def test_a_refused_coding_is_not_used(server):
    response = post(server, json.dumps(BODY).encode(), {"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in response.headers
    assert sums(response.raw) == [11, 22, 33, 44]


@pytest.mark.parametrize(
    ("body", "accept"),
    [
        (json.dumps(BODY).encode(), "identity"),
        (json.dumps(BODY).encode(), "gzip"),
        (b"{", "identity"),
    ],
)
def test_infer_answers_carry_their_length_not_chunked_framing(server, body, accept):
    response = post(server, body, {"Accept-Encoding": accept})
    assert "transfer-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.raw)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_compression_both_ways(server, algorithm, binary):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    a = np.array([[1, 2, 3, 4]], dtype=np.int32)
    inputs = [httpclient.InferInput(n, [1, 4], "INT32") for n in ("a", "b")]
    for item in inputs:
        item.set_data_from_numpy(a, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=binary)]
    result = client.infer(
        "add_sub", inputs, outputs=outputs,
        request_compression_algorithm=algorithm, response_compression_algorithm=algorithm,
    )  # fmt: skip
    np.testing.assert_array_equal(result.as_numpy("sum"), a * 2)
    client.close()


def test_bad_compressed_bodies_are_client_errors(server):
    bad = post(server, b"not gzip at all", {"Content-Encoding": "gzip"})
    assert bad.status_code == 400
    assert "not valid gzip" in json.loads(bad.raw)["error"]
    unknown = post(server, json.dumps(BODY).encode(), {"Content-Encoding": "br"})
    assert unknown.status_code == 400
    assert "'br' is not supported" in json.loads(unknown.raw)["error"]
    # 1 MB of zeros compresses to ~1 kB but decompresses past --max-request-bytes.
    bomb = post(server, gzip.compress(b"0" * 1_000_000), {"Content-Encoding": "gzip"})
    assert bomb.status_code == 413
    assert "exceeds the limit of 100000 bytes" in json.loads(bomb.raw)["error"]
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


@pytest.mark.parametrize("content_type", ["application/octet-stream", None])
def test_json_without_a_json_content_type_is_read_as_json(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(server, json.dumps(BODY).encode(), headers)
    assert response.status_code == 200
    assert sums(response.raw) == [11, 22, 33, 44]


def test_index_with_an_empty_body_and_unknown_query_parameters(server):
    index = httpx.post(f"{server.url}/v2/repository/index", content=b"")
    assert index.status_code == 200
    assert [row["name"] for row in index.json()] == ["add_sub"]
    meta = httpx.get(f"{server.url}/v2/models/add_sub", params={"whatever": "1"})
    assert meta.status_code == 200
    infer = httpx.post(f"{server.url}/v2/models/add_sub/infer?trace=1", json=BODY)
    assert sums(infer.content) == [11, 22, 33, 44]


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


@given(st.binary(max_size=5000), st.sampled_from(["gzip", "deflate"]))
def test_encode_then_decode_round_trips(body, coding):
    assert http_encoding.decode_body(http_encoding.encode_body(body, coding), coding, 5000) == body


def test_decode_refuses_output_over_the_limit_and_truncated_streams():
    with pytest.raises(PayloadTooLarge):
        http_encoding.decode_body(gzip.compress(b"x" * 101), "gzip", 100)
    assert http_encoding.decode_body(gzip.compress(b"x" * 100), "gzip", 100) == b"x" * 100
    with pytest.raises(InvalidArgument, match="not valid gzip"):
        http_encoding.decode_body(gzip.compress(b"x" * 100)[:-8], "gzip", 1000)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("identity", None), ("gzip", "gzip"), ("br, deflate", "deflate"),
     ("GZIP;q=0.5", "gzip"), ("gzip;q=0, deflate", "deflate"), ("gzip;q=0.0", None)],
)  # fmt: skip
def test_choose_coding(header, expected):
    assert http_encoding.choose_coding(header) == expected
