"""Open server-sent-event streams per client address: over the limit a stream is 429 in
OpenAI's envelope (and on the generate extension), and a client that disconnects
mid-stream frees its slot."""

from __future__ import annotations

import time

import httpx
import pytest

#: Far longer than any wait the test needs: the slot must come back long before.
BOUND_S = 120
#: Megabytes of events: more than socket buffers hold, so a stream whose client stops
#: reading stays open (and holds its slot) until the client leaves.
LONG = {"model": "tiny", "prompt": "hello", "max_tokens": 4000, "ignore_eos": True, "n": 8}


@pytest.fixture
def server(tiny_repo, start_server):
    return start_server(tiny_repo, "--max-streams-per-client", "1")


def _open(client: httpx.Client, path: str, body: dict) -> httpx.Response:
    request = client.build_request("POST", path, json=body)
    return client.send(request, stream=True)


def test_a_second_stream_from_one_client_is_429_until_the_first_disconnects(server):
    with httpx.Client(base_url=server.url, timeout=60) as first:
        stream = _open(first, "/v1/completions", {**LONG, "stream": True})
        assert stream.status_code == 200
        # Kept: an httpx line iterator that is dropped closes the response (a disconnect).
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")  # generating: the slot is held
        with httpx.Client(base_url=server.url, timeout=60) as second:
            refused = second.post("/v1/completions", json={**LONG, "stream": True})
            assert refused.status_code == 429
            error = refused.json()["error"]
            assert error["type"] == "rate_limit_error"
            assert "1 open streams" in error["message"]
            generate = second.post("/v2/models/tiny/generate_stream", json={"text_input": "hi"})
            assert generate.status_code == 429
            # A request that does not stream needs no slot.
            plain = {**LONG, "max_tokens": 2, "n": 1}
            assert second.post("/v1/completions", json=plain).status_code == 200
        assert next(lines) is not None  # still streaming
        stream.close()  # the client leaves mid-stream
    with httpx.Client(base_url=server.url, timeout=60) as later:
        deadline = time.monotonic() + BOUND_S
        while True:
            short = {**LONG, "max_tokens": 2, "n": 1, "stream": True}
            again = later.post("/v1/completions", json=short)
            if again.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert again.status_code == 200
        assert again.text.rstrip().endswith("data: [DONE]")
