"""inference.GRPCInferenceService against a real server: Triton's own gRPC clients,
unchanged, and tritonclient's generated stubs for what the client never sends (typed
``contents``). aiaas's own generated modules are never imported here (see conftest)."""

from __future__ import annotations

import asyncio
import queue
import struct
from pathlib import Path

import grpc
import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    for datatype in models.DATATYPES:
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 8")
    models.save(models.add_sub(), repo, "add_sub", version=2, config="max_batch_size: 8")
    return module_server(repo)


@pytest.fixture
def client(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server):
    """Triton's generated stub on a plain channel: sends exactly the message we build."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def raw_form(array: np.ndarray) -> bytes:
    """The raw wire form, spelled out independently of the server's codec."""
    if array.dtype == np.object_:
        return b"".join(struct.pack("<I", len(item)) + item for item in array.ravel())
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def add_sub_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = [
        grpcclient.InferInput("a", list(a.shape), "INT32"),
        grpcclient.InferInput("b", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


# ---- health, metadata, configuration, statistics -------------------------------------


def test_server_is_live_and_ready_and_names_what_rest_names(client, server):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    rest = httpx.get(f"{server.url}/v2").json()
    assert metadata.name == "aiaas"
    assert metadata.version == rest["version"]
    assert list(metadata.extensions) == rest["extensions"]


def test_model_ready_per_model_and_version(client):
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "2")
    # As Triton: unknown models and versions are not ready rather than errors.
    assert not client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("missing")


def test_model_metadata_equals_the_rest_metadata(client, server):
    metadata = client.get_model_metadata("add_sub")
    rest = httpx.get(f"{server.url}/v2/models/add_sub").json()
    assert metadata.name == "add_sub"
    assert list(metadata.versions) == rest["versions"] == ["2"]
    assert metadata.platform == rest["platform"]
    for tensors, expected in (
        (metadata.inputs, rest["inputs"]),
        (metadata.outputs, rest["outputs"]),
    ):
        got = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors]
        assert got == expected
    assert client.get_model_metadata("add_sub", "2").versions == ["2"]


def test_model_config_decodes_in_tritons_own_message(client, server):
    config = client.get_model_config("add_sub").config
    rest = httpx.get(f"{server.url}/v2/models/add_sub/config").json()
    assert isinstance(config, triton_config.ModelConfig)
    assert config.name == "add_sub"
    assert config.max_batch_size == rest["max_batch_size"] == 8
    assert config.platform == "onnxruntime_onnx"
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("a", triton_config.TYPE_INT32, [4]),
        ("b", triton_config.TYPE_INT32, [4]),
    ]
    assert [o.name for o in config.output] == ["sum", "difference"]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.instance_group[0].kind == triton_config.ModelInstanceGroup.KIND_CPU


def test_statistics_count_grpc_requests_as_rest_reports_them(client, server):
    before = client.get_inference_statistics("identity_int16").model_stats[0]
    data = models.sample("INT16")
    for _ in range(3):
        infer_input = grpcclient.InferInput("x", [1, 4], "INT16")
        infer_input.set_data_from_numpy(data)
        client.infer("identity_int16", [infer_input])
    after = client.get_inference_statistics("identity_int16").model_stats[0]
    assert after.inference_stats.success.count == before.inference_stats.success.count + 3
    assert after.inference_count == before.inference_count + 3
    rest = httpx.get(f"{server.url}/v2/models/identity_int16/stats").json()["model_stats"][0]
    assert rest["inference_count"] == after.inference_count
    assert rest["execution_count"] == after.execution_count
    everything = client.get_inference_statistics().model_stats
    assert {s.name for s in everything} >= {"add_sub", "identity_int16"}


def test_repository_index_lists_every_model(client):
    index = client.get_model_repository_index().models
    rows = {(m.name, m.version, m.state) for m in index}
    assert ("add_sub", "2", "READY") in rows
    assert {m.name for m in index} >= {f"identity_{d.lower()}" for d in models.DATATYPES}


def test_load_and_unload_refused_outside_explicit_mode(client):
    with pytest.raises(InferenceServerException, match="model control mode 'none'") as error:
        client.unload_model("add_sub")
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert client.is_model_ready("add_sub")


def test_rpcs_aiaas_does_not_serve_are_unimplemented(client, server):
    with pytest.raises(InferenceServerException) as error:
        client.get_trace_settings()
    assert error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "Traceback" not in server.logs()


# ---- inference ---------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(models.DATATYPES))
def test_every_datatype_round_trips_through_raw_contents(client, datatype):
    data = models.sample(datatype)
    infer_input = grpcclient.InferInput("x", list(data.shape), datatype)
    infer_input.set_data_from_numpy(data)
    result = client.infer(f"identity_{datatype.lower()}", [infer_input])
    got = result.as_numpy("y")
    output = result.get_output("y")
    assert output.datatype == datatype
    assert list(output.shape) == [1, 4]
    if datatype == "BYTES":
        assert got.tolist() == data.tolist()
    else:
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data)


TYPED = [d for d in models.DATATYPES if d != "FP16"]


def typed_contents(datatype: str, data: np.ndarray) -> service_pb2.InferTensorContents:
    field = {
        "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
        "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
        "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
        "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
    }[datatype]  # fmt: skip
    contents = service_pb2.InferTensorContents()
    getattr(contents, field).extend(data.ravel().tolist())
    return contents


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_contents_are_answered_in_raw_output_contents(stub, datatype):
    data = models.sample(datatype)
    request = service_pb2.ModelInferRequest(model_name=f"identity_{datatype.lower()}", id="t1")
    request.inputs.add(
        name="x", datatype=datatype, shape=[1, 4], contents=typed_contents(datatype, data)
    )
    response = stub.ModelInfer(request)
    assert response.id == "t1"
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("y", datatype, [1, 4])
    assert not output.HasField("contents")
    assert list(response.raw_output_contents) == [raw_form(data)]


def test_typed_and_raw_inputs_give_the_same_answer(stub, client):
    a = np.arange(8, dtype=np.int32).reshape(2, 4)
    b = np.full((2, 4), 3, dtype=np.int32)
    typed = service_pb2.ModelInferRequest(model_name="add_sub")
    for name, array in (("a", a), ("b", b)):
        typed.inputs.add(
            name=name, datatype="INT32", shape=[2, 4], contents=typed_contents("INT32", array)
        )
    raw = client.infer("add_sub", add_sub_inputs(a, b)).get_response()
    answered = stub.ModelInfer(typed)
    assert list(answered.raw_output_contents) == list(raw.raw_output_contents)
    assert list(raw.raw_output_contents) == [raw_form(a + b), raw_form(a - b)]


def test_infer_echoes_id_and_returns_only_the_requested_outputs(client):
    a = np.array([[1, 2, 3, 4]], dtype=np.int32)
    b = np.array([[10, 20, 30, 40]], dtype=np.int32)
    result = client.infer(
        "add_sub",
        add_sub_inputs(a, b),
        outputs=[grpcclient.InferRequestedOutput("difference")],
        request_id="req-42",
    )
    response = result.get_response()
    assert response.id == "req-42"
    assert (response.model_name, response.model_version) == ("add_sub", "2")
    assert [o.name for o in response.outputs] == ["difference"]
    np.testing.assert_array_equal(result.as_numpy("difference"), a - b)
    assert result.as_numpy("sum") is None


def test_infer_on_a_named_version(client):
    a = np.ones((3, 4), dtype=np.int32)
    result = client.infer("add_sub", add_sub_inputs(a, a), model_version="2")
    assert result.get_response().model_version == "2"
    np.testing.assert_array_equal(result.as_numpy("sum"), a * 2)


def test_asyncio_client_gets_each_concurrent_request_its_own_answer(server):
    async def run() -> list[np.ndarray]:
        async with aioclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
            assert await client.is_server_live()
            assert await client.is_model_ready("add_sub")
            assert (await client.get_server_metadata()).name == "aiaas"

            async def one(index: int) -> np.ndarray:
                a = np.full((1, 4), index, dtype=np.int32)
                inputs = [aioclient.InferInput(n, [1, 4], "INT32") for n in ("a", "b")]
                inputs[0].set_data_from_numpy(a)
                inputs[1].set_data_from_numpy(a)
                return (await client.infer("add_sub", inputs)).as_numpy("sum")

            return await asyncio.gather(*(one(i) for i in range(12)))

    sums = asyncio.run(run())
    for index, got in enumerate(sums):
        np.testing.assert_array_equal(got, np.full((1, 4), 2 * index, dtype=np.int32))


def test_stream_answers_every_request_and_reports_failures_in_the_stream(client):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for index in range(6):
            a = np.full((1, 4), index, dtype=np.int32)
            model = "add_sub" if index != 3 else "nope"
            client.async_stream_infer(model, add_sub_inputs(a, a), request_id=str(index))
        results = [answers.get(timeout=60) for _ in range(6)]
    finally:
        client.stop_stream()
    failures = [error for result, error in results if error is not None]
    assert len(failures) == 1
    assert "Request for unknown model: 'nope' is not found" in failures[0].message()
    by_id = {r.get_response().id: r for r, error in results if error is None}
    assert sorted(by_id) == ["0", "1", "2", "4", "5"]
    for request_id, result in by_id.items():
        expected = np.full((1, 4), 2 * int(request_id), dtype=np.int32)
        np.testing.assert_array_equal(result.as_numpy("sum"), expected)


def arrays_of(datatype: str) -> st.SearchStrategy[np.ndarray]:
    rows = st.integers(1, 3)
    if datatype == "BYTES":
        text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
        items = st.lists(text.map(str.encode), min_size=4, max_size=4)
        return st.lists(items, min_size=1, max_size=3).map(
            lambda rows: np.array(rows, dtype=np.object_).reshape(len(rows), 4)
        )
    dtype = np.dtype(models.DATATYPES[datatype][1])
    elements = hnp.from_dtype(dtype, allow_nan=False) if dtype.kind == "f" else None
    return rows.flatmap(lambda n: hnp.arrays(dtype, (n, 4), elements=elements))


@st.composite
def tensors_and_forms(draw) -> tuple[str, np.ndarray, str]:
    datatype = draw(st.sampled_from(list(models.DATATYPES)))
    form = "raw" if datatype == "FP16" else draw(st.sampled_from(["raw", "typed"]))
    return datatype, draw(arrays_of(datatype)), form


@settings(max_examples=60, deadline=None)
@given(case=tensors_and_forms())
def test_any_tensor_comes_back_bit_for_bit_in_raw_form(stub, case):
    datatype, data, form = case
    request = service_pb2.ModelInferRequest(model_name=f"identity_{datatype.lower()}")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=list(data.shape))
    if form == "typed":
        tensor.contents.CopyFrom(typed_contents(datatype, data))
    else:
        request.raw_input_contents.append(raw_form(data))
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].shape) == list(data.shape)
    assert list(response.raw_output_contents) == [raw_form(data)]
