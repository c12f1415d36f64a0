"""System shared memory over gRPC, through tritonclient.grpc and its shared_memory
utilities: regions registered, inputs read from them and outputs written into them,
mixed with ordinary raw tensors in one request, and misuse answered as client errors."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    for datatype in ("FP32", "FP16", "BOOL", "BYTES"):
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    models.save(models.add_sub(), repo, "add_sub")
    return module_server(repo)


@pytest.fixture
def client(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.unregister_system_shared_memory()
    client.close()


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"alpha", b"", b"\x00nul", "gr\u00fc\u00df".encode()]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, True, True]])
    return np.array([[1, 2, 250, 7]], dtype={"FP32": np.float32, "FP16": np.float16}[datatype])


def raw_of(data: np.ndarray) -> bytes:
    if data.dtype == np.object_:
        return serialize_byte_tensor(data).item()
    return data.tobytes()


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "BOOL", "BYTES"])
def test_inputs_and_outputs_go_through_shared_memory(client, shm_regions, datatype):
    data = sample(datatype)
    raw = raw_of(data)
    in_name, in_key, in_handle = shm_regions(len(raw) + 16)
    out_name, out_key, out_handle = shm_regions(len(raw) + 16)
    shm.set_shared_memory_region(in_handle, [np.frombuffer(raw, np.uint8)], offset=16)
    client.register_system_shared_memory(in_name, in_key, len(raw) + 16)
    client.register_system_shared_memory(out_name, out_key, len(raw) + 16)

    x = grpcclient.InferInput("x", list(data.shape), datatype)
    x.set_shared_memory(in_name, len(raw), offset=16)
    y = grpcclient.InferRequestedOutput("y")
    y.set_shared_memory(out_name, len(raw) + 16)
    result = client.infer(f"identity_{datatype.lower()}", [x], outputs=[y])

    output = result.get_output("y")
    assert output.parameters["shared_memory_byte_size"].int64_param == len(raw)
    assert list(result.get_response().raw_output_contents) == [b""]
    dtype = np.object_ if datatype == "BYTES" else data.dtype
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out_handle, dtype, list(data.shape)), data
    )


def test_shared_and_raw_tensors_mix_in_one_request(client, shm_regions):
    a = np.arange(4, dtype=np.int32)[None]
    b = np.full((1, 4), 10, dtype=np.int32)
    a_name, a_key, a_handle = shm_regions(16)
    sum_name, sum_key, sum_handle = shm_regions(16)
    shm.set_shared_memory_region(a_handle, [a])
    client.register_system_shared_memory(a_name, a_key, 16)
    client.register_system_shared_memory(sum_name, sum_key, 16)
    inputs = [grpcclient.InferInput(n, [1, 4], "INT32") for n in ("a", "b")]
    inputs[0].set_shared_memory(a_name, 16)
    inputs[1].set_data_from_numpy(b)
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("sum", "difference")]
    outputs[0].set_shared_memory(sum_name, 16)
    result = client.infer("add_sub", inputs, outputs=outputs)
    # The output after the one in shared memory is still found by its position.
    np.testing.assert_array_equal(result.as_numpy("difference"), a - b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(sum_handle, np.int32, [1, 4]), a + b)


def test_status_lists_registered_regions_and_unregister_removes_them(client, shm_regions):
    name, key, _ = shm_regions(64)
    client.register_system_shared_memory(name, key, 32, offset=8)
    status = client.get_system_shared_memory_status(name).regions
    assert list(status) == [name]
    region = status[name]
    assert (region.name, region.key, region.offset, region.byte_size) == (name, key, 8, 32)
    assert name in client.get_system_shared_memory_status().regions
    client.unregister_system_shared_memory(name)
    client.unregister_system_shared_memory(name)  # gone already: success, as Triton
    assert len(client.get_system_shared_memory_status().regions) == 0
    with pytest.raises(InferenceServerException, match="is not registered") as unknown:
        client.get_system_shared_memory_status(name)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"


def test_registration_misuse_is_refused_with_its_code(client, shm_regions):
    name, key, _ = shm_regions(64)
    with pytest.raises(InferenceServerException, match="unable to open") as missing:
        client.register_system_shared_memory("ghost", "/aiaas_no_such_key", 8)
    assert missing.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.register_system_shared_memory(name, key, 64)
    with pytest.raises(InferenceServerException, match="already registered") as twice:
        client.register_system_shared_memory(name, key, 64)
    assert twice.value.status() == "StatusCode.ALREADY_EXISTS"


def test_input_in_an_unregistered_region_is_invalid_argument(client, server):
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_shared_memory("never-registered", 16)
    with pytest.raises(InferenceServerException, match="is not registered") as refused:
        client.infer("identity_fp32", [x])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "Traceback" not in server.logs()
