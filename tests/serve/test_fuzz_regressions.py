"""Bugs the fuzzers found (schemathesis, atheris, hypothesis over gRPC), each pinned by
the request that found it, against a real server."""

from __future__ import annotations

import httpx
import models
import pytest


@pytest.fixture(scope="module")
def explicit_server(module_tmp, module_server):
    """One server for the module: its tests only read, or attempt loads that must fail and
    leave the model table as it was (which a shared server checks across tests too)."""
    models.save(models.add_sub(), module_tmp / "repo", "add_sub")
    return module_server(
        module_tmp / "repo", "--model-control-mode", "explicit", "--load-model", "*"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("%03", "may not be '.', '..' or hold '/'"),  # a control character: refused by name
        ("absent", "no model folder named"),  # a fine name with no folder behind it
    ],
)
def test_a_failed_load_of_a_name_the_repository_lacks_leaves_it_unknown(
    explicit_server, name, reason
):
    # schemathesis (stateful): load '\x03' failed, then GET /v2/models/%03 answered 503
    # "not ready" instead of 404, and every such load grew the model table.
    with httpx.Client(base_url=explicit_server.url, timeout=30) as client:
        load = client.post(f"/v2/repository/models/{name}/load")
        assert load.status_code == 400
        assert reason in load.json()["error"]
        assert client.get(f"/v2/models/{name}").status_code == 404
        assert client.get(f"/v2/models/{name}/ready").status_code == 404
        names = [row["name"] for row in client.post("/v2/repository/index").json()]
        assert names == ["add_sub"]
        assert client.get("/v2/health/ready").status_code == 200


def test_a_config_number_out_of_range_fails_that_model_not_the_server(tmp_path, start_server):
    # atheris (config_pbtxt): protobuf's ValueError for an enum number out of range
    # escaped the config reader past every handler that expects our errors.
    repo = tmp_path / "repo"
    models.save(models.add_sub(), repo, "add_sub")
    config = 'input [ { name: "a" data_type: 66666666666666666666666 } ]\n'
    models.save(models.add_sub(), repo, "broken", config=config)
    server = start_server(repo, "--model-control-mode", "explicit", "--load-model", "*")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v2/models/add_sub/ready").status_code == 200
        load = client.post("/v2/repository/models/broken/load")
        assert load.status_code == 400
        assert "out of range" in load.json()["error"]
        assert client.get("/v2/health/live").json() == {"live": True}


def test_a_v1_path_no_route_matches_is_answered_in_openais_shape(explicit_server):
    # schemathesis: a newline in /v1/models/{model} escaped the `path` pattern of every
    # /v1 route, and the 404 came in V2's shape to an OpenAI client.
    answer = httpx.get(f"{explicit_server.url}/v1/models/a%0Ab", timeout=30)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid URL (GET /v1/models/a")
    v2 = httpx.get(f"{explicit_server.url}/v2/nowhere", timeout=30)
    assert v2.json() == {"error": "no route for /v2/nowhere"}


def test_a_negative_seed_samples_reproducibly_instead_of_failing(tmp_path, start_server):
    # schemathesis: {"model": "tiny", "seed": -9487994, ...} on /v1/chat/completions was
    # a 500: numpy's generator refuses negative seeds, OpenAI's API allows them.
    from tiny_llama import write_tiny_llama

    write_tiny_llama(tmp_path / "repo", "tiny", 1, context_length=48)
    server = start_server(tmp_path / "repo")
    body = {"model": "tiny", "prompt": "The capital", "max_tokens": 8, "temperature": 1.0}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        texts = []
        for seed in (-9487994, -9487994, 2**64 - 9487994):
            answer = client.post("/v1/completions", json={**body, "seed": seed, "n": 2})
            assert answer.status_code == 200, answer.text
            texts.append([choice["text"] for choice in answer.json()["choices"]])
        assert texts[0] == texts[1] == texts[2]
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "seed": -1}
        assert (
            client.post("/v1/chat/completions", json={**chat, "max_tokens": 4}).status_code == 200
        )
        generate = {"text_input": "hi", "parameters": {"seed": -5, "max_tokens": 4}}
        assert client.post("/v2/models/tiny/generate", json=generate).status_code == 200


@pytest.mark.parametrize("suffix", ["", "/ready", "/stats", "/config"])
def test_a_version_of_non_ascii_digits_is_a_400(explicit_server, suffix):
    # schemathesis: GET /v2/models/probe/versions/%C2%B2/stats was a 500: '²'.isdigit() is
    # true, int('²') raises ValueError.
    answer = httpx.get(f"{explicit_server.url}/v2/models/add_sub/versions/%C2%B2{suffix}")
    assert answer.status_code == 400
    assert "version string" in answer.json()["error"]


def test_a_version_folder_of_non_ascii_digits_is_ignored(tmp_path, start_server):
    # The same str.isdigit() trap in the repository reader: a folder named '²' beside '1'.
    models.save(models.add_sub(), tmp_path / "repo", "add_sub")
    (tmp_path / "repo" / "add_sub" / "\u00b2").mkdir()
    server = start_server(tmp_path / "repo")
    answer = httpx.get(f"{server.url}/v2/models/add_sub", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["versions"] == ["1"]
