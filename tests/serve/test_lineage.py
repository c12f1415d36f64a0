"""A model file served from a bare repository (no registry) says where it came from: its
metadata (REST, tritonclient over HTTP and gRPC) gives the lineage summary stamped into
the file, its lineage link returns the whole record, and with --provenance-header every
answer (V2 REST, gRPC, the OpenAI routes, streamed or not) names the version and file
that computed it. aiaas's gRPC modules are never imported here (see conftest)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import grpc
import httpx
import models
import numpy as np
import onnx
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from oip_metadata import oip_parameters
from onnx import TensorProto, helper, numpy_helper
from tiny_llama import write_tiny_llama
from tritonclient.grpc import service_pb2, service_pb2_grpc

from aiaas import lineage

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers

HEADER = "aiaas-model-version"
RECIPE = {"prune": {"ratio": 0.5}, "quantize": "int8"}
PARENTS = [
    {"uri": "models:/digits/1", "sha256": "a" * 64},
    {"path": "/data/runs/digits/model.onnx", "sha256": "b" * 64},
]
X = np.arange(8, dtype=np.float32).reshape(2, 4)


def stamped(model: onnx.ModelProto, run_id: str) -> onnx.ModelProto:
    record = lineage.make_record(
        "compress",
        run_id=run_id,
        dataset_fingerprint="sha256:" + "d" * 64,
        recipe=RECIPE,
        parents=PARENTS,
    )
    lineage.set_on_model(model, record)
    return model


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embedding_model() -> onnx.ModelProto:
    """token ids in, [count of tokens] * 3 out: an embedding model of the V2 path."""
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask", "axes"], ["count"], keepdims=1),
        helper.make_node("Mul", ["count", "ones"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "embed",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(np.ones((1, 3), np.float32), "ones"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def repo(module_tmp: Path) -> Path:
    """A file made elsewhere and copied in, a file with no record, a tiny Llama and an
    embedding model, both stamped."""
    made = module_tmp / "elsewhere" / "model.onnx"
    made.parent.mkdir(parents=True)
    onnx.save(stamped(models.add_constant(3.0), "run-42"), made)
    root = module_tmp / "repo"
    (root / "stamped" / "1").mkdir(parents=True)
    shutil.copy(made, root / "stamped" / "1" / "model.onnx")
    models.save(models.add_constant(1.0), root, "plain")
    tiny = write_tiny_llama(root, "tiny", 1)
    onnx.save(stamped(onnx.load(tiny / "model.onnx"), "run-llm"), tiny / "model.onnx")
    models.save(stamped(embedding_model(), "run-embed"), root, "embed")
    shutil.copy(tiny / "tokenizer.json", root / "embed" / "1" / "tokenizer.json")
    (root / "embed" / "config.pbtxt").write_text(
        'max_batch_size: 8\nparameters { key: "task" value { string_value: '
        '"feature-extraction" } }\n'
    )
    return root


@pytest.fixture(scope="module")
def server(repo: Path, module_server):
    return module_server(repo, "--provenance-header")


def provenance(repo: Path, name: str) -> str:
    return f"{name}/1 sha256={sha256_of(repo / name / '1' / 'model.onnx')}"


def infer_request(name: str) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=name)
    request.inputs.add(name="x", datatype="FP32", shape=list(X.shape))
    request.raw_input_contents.append(X.tobytes())
    return request


def rest_infer(client: httpx.Client, name: str) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.tolist()}]}
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    return response


# ---- metadata and the lineage link ---------------------------------------------------


def test_a_copied_file_says_where_it_came_from_in_its_metadata_on_both_wires(server, repo):
    expected = {
        "run_id": "run-42",
        "dataset_fingerprint": "sha256:" + "d" * 64,
        "recipe_digest": lineage.recipe_digest(RECIPE),
        "step": "compress",
        "parents": json.dumps(PARENTS, separators=(",", ":")),
        "sha256": sha256_of(repo / "stamped" / "1" / "model.onnx"),
        "lineage": "/v2/models/stamped/versions/1/lineage",
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v2/models/stamped").json()["parameters"] == expected
        assert client.get("/v2/models/stamped/versions/1").json()["parameters"] == expected
    http = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert http.get_model_metadata("stamped")["parameters"] == expected
    assert json.loads(http.get_model_metadata("stamped", "1")["parameters"]["parents"]) == PARENTS
    http.close()
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as rpc:
        assert oip_parameters(rpc.get_model_metadata("stamped")) == expected
        assert oip_parameters(rpc.get_model_metadata("stamped", "1")) == expected
        # Triton's own view of the message is untouched.
        assert rpc.get_model_metadata("stamped").inputs[0].name == "x"


def test_the_lineage_link_returns_the_whole_record_of_the_file(server, repo):
    record = lineage.read_file(repo / "stamped" / "1" / "model.onnx")
    assert record is not None
    assert record["parents"] == PARENTS
    with httpx.Client(base_url=server.url, timeout=30) as client:
        link = client.get("/v2/models/stamped").json()["parameters"]["lineage"]
        assert client.get(link).json() == record
        assert client.get("/v2/models/stamped/lineage").json() == record


def test_a_file_without_a_record_has_only_its_hash_and_no_lineage_link(server, repo):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        parameters = client.get("/v2/models/plain").json()["parameters"]
        assert parameters == {"sha256": sha256_of(repo / "plain" / "1" / "model.onnx")}
        for path in ("/v2/models/plain/lineage", "/v2/models/plain/versions/1/lineage"):
            missing = client.get(path)
            assert missing.status_code == 404
            assert "no lineage record" in missing.json()["error"]
        for path in ("/v2/models/nothing/lineage", "/v2/models/stamped/versions/7/lineage"):
            unknown = client.get(path)
            assert unknown.status_code == 404
            assert set(unknown.json()) == {"error"}


# ---- per-request provenance -------------------------------------------------------------


def test_rest_answers_name_the_version_and_file_that_computed_them(server, repo):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name in ("stamped", "plain"):
            assert rest_infer(client, name).headers[HEADER] == provenance(repo, name)
        failed = client.post("/v2/models/stamped/infer", json={"inputs": []})
        assert failed.status_code == 400
        assert HEADER not in failed.headers


def test_grpc_answers_carry_it_in_trailing_metadata_and_each_stream_answer(server, repo):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer, call = stub.ModelInfer.with_call(infer_request("stamped"))
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == (
            (X + 3).ravel().tolist()
        )
        assert dict(call.trailing_metadata())[HEADER] == provenance(repo, "stamped")
        stream = stub.ModelStreamInfer(iter([infer_request("stamped"), infer_request("plain")]))
        answers = {
            item.infer_response.model_name: item.infer_response.parameters[HEADER].string_param
            for item in stream
        }
        assert answers == {name: provenance(repo, name) for name in ("stamped", "plain")}
        trailing = [value for key, value in stream.trailing_metadata() if key == HEADER]
        assert sorted(trailing) == sorted(answers.values())


def test_openai_answers_and_model_entries_say_where_the_model_came_from(server, repo):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    entries = {entry.id: entry.to_dict() for entry in client.models.list()}
    tiny = entries["tiny"]
    assert {key: tiny[key] for key in ("id", "object", "owned_by")} == {
        "id": "tiny",
        "object": "model",
        "owned_by": "aiaas",
    }
    assert isinstance(tiny["created"], int)
    assert tiny["lineage"]["run_id"] == "run-llm"
    assert tiny["lineage"]["parents"] == PARENTS
    assert tiny["lineage"]["recipe_digest"] == lineage.recipe_digest(RECIPE)
    assert tiny["lineage"]["url"] == "/v2/models/tiny/versions/1/lineage"
    assert entries["embed"]["lineage"]["run_id"] == "run-embed"
    assert client.models.retrieve("tiny").to_dict()["lineage"] == tiny["lineage"]

    expected = provenance(repo, "tiny")
    completion = client.completions.with_raw_response.create(
        model="tiny", prompt="def add", max_tokens=3, temperature=0
    )
    assert completion.headers[HEADER] == expected
    assert completion.parse().choices[0].finish_reason in ("length", "stop")
    chat = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
    )
    assert chat.headers[HEADER] == expected
    assert [chunk.choices[0].finish_reason for chunk in chat.parse()][-1] in ("length", "stop")
    embedded = client.embeddings.with_raw_response.create(model="embed", input=["a b", "c"])
    assert embedded.headers[HEADER] == provenance(repo, "embed")
    assert len(embedded.parse().data) == 2
    generated = httpx.post(
        f"{server.url}/v2/models/tiny/generate",
        json={"text_input": "def", "parameters": {"max_tokens": 2}},
        timeout=30,
    )
    assert generated.status_code == 200
    assert generated.headers[HEADER] == expected


def test_without_the_flag_no_answer_carries_provenance(start_server, repo):
    server = start_server(repo)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert HEADER not in rest_infer(client, "stamped").headers
        # The metadata says where the model came from either way.
        assert client.get("/v2/models/stamped").json()["parameters"]["run_id"] == "run-42"
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(infer_request("stamped"))
        assert HEADER not in dict(call.trailing_metadata())
        stream = stub.ModelStreamInfer(iter([infer_request("stamped")]))
        assert [HEADER in item.infer_response.parameters for item in stream] == [False]
        assert HEADER not in dict(stream.trailing_metadata() or ())
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    raw = client.completions.with_raw_response.create(model="tiny", prompt="def", max_tokens=2)
    assert HEADER not in raw.headers
