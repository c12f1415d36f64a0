"""One engine process per model under `--workers`: the engine process starts a process
for each model it loads (language models stay with it), front ends send a model's infer
calls straight there, and a model's process that dies takes only that model down until
it is loaded again; unloading a model stops its process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import models
import pytest
import tritonclient.http as httpclient
from tiny_llama import write_tiny_llama
from worker_pids import ENGINE, MODEL_ENGINE, alive, all_serving, children, model_engine, wait_for

X = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.identity("FP32"), repo, "first")
    models.save(models.identity("FP32"), repo, "second")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    write_tiny_llama(repo, "tiny", 1)
    started = module_server(
        repo, "--workers", "2", "--model-control-mode", "explicit",
        "--load-model", "first", "--load-model", "second", "--load-model", "tiny",
    )  # fmt: skip
    return all_serving(started)


def infer(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=X, timeout=30)


def engine_of(server) -> int:
    (engine,) = children(server.process.pid, ENGINE)
    return engine


def test_each_model_runs_in_a_process_of_its_own_and_language_models_stay(server):
    engine = engine_of(server)
    first, second = model_engine(engine, "first"), model_engine(engine, "second")
    assert first != second
    assert set(children(engine, MODEL_ENGINE)) == {first, second}  # none for "tiny"
    assert infer(server.url, "first").json()["outputs"][0]["data"] == [1, 2, 3, 4]
    chat = httpx.post(
        f"{server.url}/v1/completions",
        json={"model": "tiny", "prompt": "a", "max_tokens": 2},
        timeout=60,
    )
    assert chat.status_code == 200, chat.text


def test_infer_goes_straight_to_the_models_process(server):
    """With the engine process stopped (SIGSTOP), a model whose route the front ends
    know still answers: its calls never pass through the engine."""
    for _ in range(8):  # every front end learns the route (new connections spread)
        assert infer(server.url, "second").status_code == 200
    engine = engine_of(server)
    os.kill(engine, signal.SIGSTOP)
    try:
        answers = [infer(server.url, "second") for _ in range(8)]
    finally:
        os.kill(engine, signal.SIGCONT)
    assert [a.status_code for a in answers] == [200] * 8


def test_a_killed_model_process_takes_only_its_model_down_until_it_is_loaded_again(server):
    engine = engine_of(server)
    killed = model_engine(engine, "first")
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not alive(killed), "the model's process to die")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # meanwhile 503, never a hang or another error
        answer = infer(server.url, "first")
        assert answer.status_code in (200, 503), answer.text
        assert infer(server.url, "second").status_code == 200
        if answer.status_code == 200:
            break
    assert answer.status_code == 200, "the model was not loaded again"
    replacement = model_engine(engine, "first")
    assert replacement != killed
    index = httpx.post(f"{server.url}/v2/repository/index", timeout=30).json()
    assert {"name": "first", "version": "1", "state": "READY", "reason": ""} in index


def test_unloading_a_model_stops_its_process_and_loading_starts_one(server):
    engine = engine_of(server)
    before = model_engine(engine, "second")
    assert infer(server.url, "second").status_code == 200  # the route is known
    unloaded = httpx.post(f"{server.url}/v2/repository/models/second/unload", timeout=60)
    assert unloaded.status_code == 200, unloaded.text
    wait_for(lambda: not alive(before), "the model's process to stop")
    gone = infer(server.url, "second")
    assert gone.status_code == 404, gone.text
    assert "second" in gone.json()["error"]
    loaded = httpx.post(f"{server.url}/v2/repository/models/second/load", timeout=60)
    assert loaded.status_code == 200, loaded.text
    assert model_engine(engine, "second") != before
    assert infer(server.url, "second").status_code == 200


def test_a_model_that_fails_to_load_leaves_no_process(server):
    engine = engine_of(server)
    running = set(children(engine, MODEL_ENGINE))
    refused = httpx.post(f"{server.url}/v2/repository/models/broken/load", timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("failed to load 'broken': ")
    assert "failed to load 'broken': failed to load" not in refused.json()["error"]
    wait_for(lambda: set(children(engine, MODEL_ENGINE)) == running, "no process for it")
    assert infer(server.url, "broken").status_code == 503


def test_a_model_from_uploaded_files_is_not_loaded_again_when_its_process_dies(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    files = {"file:1/model.onnx": models.identity("FP32").SerializeToString()}
    client.load_model("uploaded", config="{}", files=files)
    assert infer(server.url, "uploaded").status_code == 200
    engine = engine_of(server)
    killed = model_engine(engine, "uploaded")
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not alive(killed), "the model's process to die")

    def row() -> dict:
        index = httpx.post(f"{server.url}/v2/repository/index", timeout=30).json()
        return next(r for r in index if r["name"] == "uploaded")

    wait_for(lambda: row()["state"] == "UNAVAILABLE", "the model to be reported down")
    assert "uploaded with the load request: load it again" in row()["reason"]
    assert infer(server.url, "uploaded").status_code == 503
    client.load_model("uploaded", config="{}", files=files)
    assert infer(server.url, "uploaded").status_code == 200
    client.close()
