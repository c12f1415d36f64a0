"""`aiaas serve --workers 2` answers as one process does, driven by the clients users
use (httpx, tritonclient HTTP and gRPC, the official openai client): infer on every
wire, metadata, statistics and metrics that count what every front end answered,
load/unload, shared memory, streamed generations; and both front ends really serve.

One server for the module: these tests change nothing another one reads.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import queue
import re
import time
from pathlib import Path

import grpc
import httpx
import models
import numpy as np
import openai
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from grpc_stream import GrpcStream
from tiny_llama import write_tiny_llama
from tritonclient.grpc import service_pb2, service_pb2_grpc
from worker_pids import (
    ENGINE,
    FRONT_END,
    all_serving,
    children,
    connections_by_process,
    model_engine,
)

PROVENANCE = "aiaas-model-version"
A = np.arange(8, dtype=np.int32).reshape(2, 4)
B = np.full((2, 4), 3, dtype=np.int32)


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub")
    models.save(models.identity("FP32"), repo, "identity")
    models.save(models.add_sub(), repo, "spare")
    models.save(models.identity("FP32", ("batch", "width")), repo, "wide")
    write_tiny_llama(repo, "tiny", 1, context_length=4096)
    started = module_server(
        repo, "--workers", "2", "--model-control-mode", "explicit", "--provenance-header",
        "--max-streams-per-client", "1", "--load-model", "add_sub", "--load-model", "identity",
        "--load-model", "wide", "--load-model", "tiny",
    )  # fmt: skip
    return all_serving(started)


def json_body(a: np.ndarray, b: np.ndarray) -> dict:
    return {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": "INT32", "data": x.ravel().tolist()}
            for name, x in (("a", a), ("b", b))
        ]
    }


def grpc_inputs(a: np.ndarray, b: np.ndarray) -> list:
    inputs = [grpcclient.InferInput(name, list(a.shape), "INT32") for name in ("a", "b")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


def success_count(url: str, model: str) -> int:
    stats = httpx.get(f"{url}/v2/models/{model}/stats", timeout=30).json()
    return sum(entry["inference_stats"]["success"]["count"] for entry in stats["model_stats"])


def metric(url: str, name: str, model: str) -> float:
    prefix = f'{name}{{model="{model}",version="1"}} '
    lines = httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
    return float(next(line for line in lines if line.startswith(prefix)).split()[-1])


def test_infer_answers_on_every_wire_with_its_provenance(server):
    answer = httpx.post(f"{server.url}/v2/models/add_sub/infer", json=json_body(A, B), timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs == {"sum": (A + B).ravel().tolist(), "difference": (A - B).ravel().tolist()}
    assert answer.headers[PROVENANCE].startswith("add_sub/1 sha256=")

    rest = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    inputs = [httpclient.InferInput(name, [2, 4], "INT32") for name in ("a", "b")]
    inputs[0].set_data_from_numpy(A, binary_data=True)
    inputs[1].set_data_from_numpy(B, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("sum", binary_data=True)]
    np.testing.assert_array_equal(
        rest.infer("add_sub", inputs, outputs=wanted).as_numpy("sum"), A + B
    )
    rest.close()

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    np.testing.assert_array_equal(
        client.infer("add_sub", grpc_inputs(A, B)).as_numpy("difference"), A - B
    )
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for index, model in enumerate(["add_sub", "nope", "add_sub"]):
            a = np.full((1, 4), index, dtype=np.int32)
            client.async_stream_infer(model, grpc_inputs(a, a), request_id=str(index))
        results = [answers.get(timeout=60) for _ in range(3)]
    finally:
        client.stop_stream()
        client.close()
    by_id = {r.get_response().id: r.as_numpy("sum").tolist() for r, e in results if e is None}
    assert by_id == {"0": [[0, 0, 0, 0]], "2": [[4, 4, 4, 4]]}
    assert ["nope" in e.message() for r, e in results if e is not None] == [True]


def test_large_tensors_come_back_whole_on_both_wires_many_at_once(server):
    """Tensors of 1 MiB cross the hop through shared memory both ways, between the front
    ends and the model's own engine process: many at once on REST (binary) and gRPC,
    each answer the caller's own, and again once the first round's slots have come
    back."""
    rows = [np.full((1, 256 * 1024), i, dtype=np.float32) for i in range(24)]

    def over_rest(x: np.ndarray) -> np.ndarray:
        with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as client:
            infer_input = httpclient.InferInput("x", list(x.shape), "FP32")
            infer_input.set_data_from_numpy(x, binary_data=True)
            wanted = [httpclient.InferRequestedOutput("y", binary_data=True)]
            return client.infer("wide", [infer_input], outputs=wanted).as_numpy("y")

    def over_grpc(x: np.ndarray) -> np.ndarray:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
            infer_input = grpcclient.InferInput("x", list(x.shape), "FP32")
            infer_input.set_data_from_numpy(x)
            return client.infer("wide", [infer_input]).as_numpy("y")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(2):
            answers = [pool.submit(call, x) for x in rows for call in (over_rest, over_grpc)]
            expected = [x for x in rows for _ in range(2)]
            for x, answer in zip(expected, answers, strict=True):
                np.testing.assert_array_equal(answer.result(), x)
    (engine,) = children(server.process.pid, ENGINE)
    wide = model_engine(engine, "wide")  # the model's own process answers them
    front_ends = children(server.process.pid, FRONT_END)
    assert peer_arenas(wide) >= set(front_ends)  # the requests came in their arenas
    for pid in front_ends:
        assert wide in peer_arenas(pid)  # and the answers in its own


def peer_arenas(pid: int) -> set[int]:
    """The processes whose hop arenas ``pid`` maps (an arena's memfd is named for its
    writer)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    writers = {int(m) for m in re.findall(r"memfd:aiaas-hop-(\d+)", maps)}
    return writers - {pid}


def test_grpc_trailing_metadata_and_errors_come_through(server):
    request = service_pb2.ModelInferRequest(model_name="add_sub")
    for name in ("a", "b"):
        request.inputs.add(name=name, datatype="INT32", shape=[2, 4])
    request.raw_input_contents.extend([A.tobytes(), B.tobytes()])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(request)
        assert dict(call.trailing_metadata())[PROVENANCE].startswith("add_sub/1 sha256=")
        with pytest.raises(grpc.RpcError) as missing:  # passed through to the engine
            stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        request.model_name = "nope"
        request.raw_input_contents[0] = b"short"  # a bad body for an unknown model: 404
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ModelInfer(request)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_metadata_config_and_health_pass_through_on_both_wires(server):
    rest = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert rest.is_server_live()
        assert rest.is_server_ready()
        assert client.is_server_live()
        assert client.is_server_ready()
        assert rest.get_server_metadata()["name"] == "aiaas"
        assert client.get_server_metadata().name == "aiaas"
        metadata = rest.get_model_metadata("add_sub")
        assert [i["name"] for i in metadata["inputs"]] == ["a", "b"]
        assert [o.name for o in client.get_model_metadata("add_sub").outputs] == [
            "sum",
            "difference",
        ]
        assert rest.get_model_config("add_sub")["name"] == "add_sub"
        assert client.get_model_config("add_sub").config.name == "add_sub"
        assert not rest.is_model_ready("spare")
    finally:
        rest.close()
        client.close()
    missing = httpx.get(f"{server.url}/v2/models/nope", timeout=30)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}


def test_the_request_target_reaches_the_engine_as_sent(server):
    # A dot segment normalised on the way would make this the live endpoint: one process
    # routes the path as sent, and so must the engine behind a front end.
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request("GET", "/v2/models/../health/live?x=%zz")
        answer = connection.getresponse()
        assert answer.status == 404
        assert orjson.loads(answer.read()) == {"error": "no route for /v2/models/../health/live"}
    finally:
        connection.close()


def test_statistics_and_one_metrics_scrape_count_every_front_ends_requests(server):
    before = success_count(server.url, "add_sub")
    scraped = metric(server.url, "aiaas_inference_request_success_total", "add_sub")
    for _ in range(12):  # a new connection each: the kernel spreads them over the front ends
        answer = httpx.post(f"{server.url}/v2/models/add_sub/infer", json=json_body(A, B))
        assert answer.status_code == 200
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    for _ in range(4):
        client.infer("add_sub", grpc_inputs(A, B))
    client.close()
    assert success_count(server.url, "add_sub") - before == 16
    assert metric(server.url, "aiaas_inference_request_success_total", "add_sub") - scraped == 16


def test_both_front_ends_accept_connections_and_answer_them(server):
    front_ends = children(server.process.pid, FRONT_END)
    assert len(front_ends) == 2
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(24)]
    try:
        for client in clients:  # each keeps its connection open afterwards
            assert client.post("/v2/models/add_sub/infer", json=json_body(A, B)).status_code == 200
        held = connections_by_process(front_ends, server.http_port)
    finally:
        for client in clients:
            client.close()
    # 24 connections the kernel spread by hash: all on one process is a 2**-23 chance.
    assert sum(held.values()) >= 24  # an earlier test's connection may linger
    assert all(count > 0 for count in held.values()), held


def test_grpc_streams_count_against_one_limit_whichever_front_end_they_reach(server):
    """--max-streams-per-client 1 here: the engine counts every front end's streams, so a
    client whose connections land on both front ends still holds one stream at a time."""
    front_ends = children(server.process.pid, FRONT_END)
    channels: list[grpc.Channel] = []
    try:
        # Connections of their own (no shared subchannel), until both front ends hold one.
        for _ in range(40):
            channel = grpc.insecure_channel(
                f"127.0.0.1:{server.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            grpc.channel_ready_future(channel).result(timeout=30)
            channels.append(channel)
            held = connections_by_process(front_ends, server.grpc_port)
            if len(channels) >= 4 and all(count > 0 for count in held.values()):
                break
        assert all(count > 0 for count in held.values()), held
        first = GrpcStream(channels[0])
        assert first.ask("identity", width=4).infer_response.outputs[0].name == "y"
        for channel in channels[1:]:
            refused = GrpcStream(channel).answers.get(timeout=60)
            assert isinstance(refused, grpc.RpcError), refused
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1 open streams" in refused.details()
        first.close()
        # Its slot is free once the engine has heard the stream end.
        for _ in range(600):
            later = GrpcStream(channels[-1])
            answer = later.ask("identity", width=4)
            if not isinstance(answer, grpc.RpcError):
                break
            time.sleep(0.05)
        assert answer.infer_response.outputs[0].name == "y"
        later.close()
    finally:
        for channel in channels:
            channel.close()


def test_load_and_unload_work_on_both_wires_and_a_forged_client_address_is_ignored(server):
    # Admin actions are open to loopback clients only: were the client's own
    # X-Forwarded-For believed, the engine would refuse this one as a remote client.
    forged = {"x-forwarded-for": "203.0.113.9"}
    loaded = httpx.post(f"{server.url}/v2/repository/models/spare/load", headers=forged, timeout=60)
    assert loaded.status_code == 200, loaded.text
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        assert client.is_model_ready("spare")
        np.testing.assert_array_equal(
            client.infer("spare", grpc_inputs(A, B)).as_numpy("sum"), A + B
        )
        client.unload_model("spare", headers=forged)
        assert not client.is_model_ready("spare")
    finally:
        client.close()
    assert httpx.get(f"{server.url}/v2/models/spare/ready").status_code == 404  # unknown again


def test_system_shared_memory_carries_inputs_and_outputs(server, shm_regions):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    in_name, in_key, in_handle = shm_regions(x.nbytes)
    out_name, out_key, out_handle = shm_regions(x.nbytes)
    shm.set_shared_memory_region(in_handle, [x])
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    try:
        client.register_system_shared_memory(in_name, in_key, x.nbytes)
        client.register_system_shared_memory(out_name, out_key, x.nbytes)
        assert {r["name"] for r in client.get_system_shared_memory_status()} == {
            in_name,
            out_name,
        }
        given = httpclient.InferInput("x", [2, 4], "FP32")
        given.set_shared_memory(in_name, x.nbytes)
        wanted = httpclient.InferRequestedOutput("y")
        wanted.set_shared_memory(out_name, x.nbytes)
        client.infer("identity", [given], outputs=[wanted])
        np.testing.assert_array_equal(shm.get_contents_as_numpy(out_handle, np.float32, [2, 4]), x)
    finally:
        client.unregister_system_shared_memory()
        client.close()


#: Megabytes of events: more than the sockets between engine, front end and client hold,
#: so a stream whose client stops reading stays open at the engine until the client leaves.
LONG = {"model": "tiny", "prompt": "hello", "max_tokens": 4000, "ignore_eos": True, "n": 8}


def test_openai_chat_streams_the_answer_it_gives_whole(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    question = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    whole = client.chat.completions.create(**question)
    chunks = list(client.chat.completions.create(**question, stream=True))
    client.close()
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([piece for piece in pieces if piece]) > 1


def test_a_stream_reaches_the_client_while_the_engine_still_generates(server):
    # One open stream per client (--max-streams-per-client 1), counted by the engine for
    # the client's own address: while the first stream is read, a second is refused, so
    # the first event came through before the generation ended; once the client leaves,
    # its slot comes back, so the engine saw the disconnect through the front end.
    with httpx.Client(base_url=server.url, timeout=60) as first:
        request = first.build_request("POST", "/v1/completions", json={**LONG, "stream": True})
        stream = first.send(request, stream=True)
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")
        with httpx.Client(base_url=server.url, timeout=60) as second:
            refused = second.post("/v2/models/tiny/generate_stream", json={"text_input": "hi"})
            assert refused.status_code == 429
            assert "1 open streams" in refused.json()["error"]
        stream.close()
    with httpx.Client(base_url=server.url, timeout=60) as later:
        short = {"text_input": "hi", "parameters": {"max_tokens": 4, "ignore_eos": True}}
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while (
            again := later.post("/v2/models/tiny/generate_stream", json=short)
        ).status_code == 429:
            assert time.monotonic() < deadline, "the slot never came back"
            time.sleep(0.1)
        assert again.status_code == 200
        events = [line for line in again.text.splitlines() if line.startswith("data: ")]
        assert events  # pieces of whole characters: fewer events than tokens at times
