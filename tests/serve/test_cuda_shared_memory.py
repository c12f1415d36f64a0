"""The CUDA shared memory extension as a server without GPUs answers it, through the
calls tritonclient makes (Triton's shared-memory examples clean up with them first):
status lists no regions, unregister succeeds, register is refused with the reason."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient import utils
from tritonclient.utils import InferenceServerException

#: A CUDA IPC handle is 64 opaque bytes; clients send it base64-encoded.
FAKE_RAW_HANDLE = base64.b64encode(bytes(range(64))).decode()


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    models.save(models.add_sub(dims=("batch", 16)), repo, "simple")
    return module_server(repo)


CLIENTS = {"http": httpclient, "grpc": grpcclient}


@pytest.fixture(params=sorted(CLIENTS))
def protocol(request) -> str:
    return request.param


@pytest.fixture
def client(protocol, server):
    if protocol == "http":
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    else:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield client
    client.unregister_system_shared_memory()
    client.close()


def cuda_regions(client, protocol: str) -> list:
    if protocol == "http":
        return client.get_cuda_shared_memory_status()
    return list(client.get_cuda_shared_memory_status().regions)


def test_triton_shm_example_cleans_up_then_infers_through_system_shared_memory(client, protocol):
    """What simple_http_shm_client.py and simple_grpc_shm_client.py do, in order."""
    # To make sure no shared memory regions are registered with the server.
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()

    input0_data = np.arange(start=0, stop=16, dtype=np.int32)
    input1_data = np.ones(shape=16, dtype=np.int32)
    byte_size = input0_data.size * input0_data.itemsize
    out_handle = shm.create_shared_memory_region(
        "output_data", f"/aiaas_test_out_{protocol}", byte_size * 2
    )
    in_handle = shm.create_shared_memory_region(
        "input_data", f"/aiaas_test_in_{protocol}", byte_size * 2
    )
    try:
        client.register_system_shared_memory(
            "output_data", f"/aiaas_test_out_{protocol}", byte_size * 2
        )
        shm.set_shared_memory_region(in_handle, [input0_data])
        shm.set_shared_memory_region(in_handle, [input1_data], offset=byte_size)
        client.register_system_shared_memory(
            "input_data", f"/aiaas_test_in_{protocol}", byte_size * 2
        )
        inputs = [CLIENTS[protocol].InferInput(n, [1, 16], "INT32") for n in ("a", "b")]
        inputs[0].set_shared_memory("input_data", byte_size)
        inputs[1].set_shared_memory("input_data", byte_size, offset=byte_size)
        outputs = [CLIENTS[protocol].InferRequestedOutput(n) for n in ("sum", "difference")]
        outputs[0].set_shared_memory("output_data", byte_size)
        outputs[1].set_shared_memory("output_data", byte_size, offset=byte_size)

        results = client.infer(model_name="simple", inputs=inputs, outputs=outputs)

        output0 = results.get_output("sum")
        datatype = output0["datatype"] if protocol == "http" else output0.datatype
        dtype = utils.triton_to_np_dtype(datatype)
        total = shm.get_contents_as_numpy(out_handle, dtype, [1, 16])
        difference = shm.get_contents_as_numpy(out_handle, dtype, [1, 16], offset=byte_size)
        np.testing.assert_array_equal(total[0], input0_data + input1_data)
        np.testing.assert_array_equal(difference[0], input0_data - input1_data)
        client.unregister_system_shared_memory()
    finally:
        shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)


def test_status_lists_no_cuda_regions(client, protocol):
    assert cuda_regions(client, protocol) == []


def test_status_of_a_named_cuda_region_is_not_found_in_tritons_words(client, protocol):
    with pytest.raises(InferenceServerException) as unknown:
        client.get_cuda_shared_memory_status("gpu_in")
    assert "Unable to find cuda shared memory region: 'gpu_in'" in unknown.value.message()
    expected = "404" if protocol == "http" else "StatusCode.NOT_FOUND"
    assert unknown.value.status() == expected


def test_unregister_succeeds_for_all_and_for_a_name(client, protocol):
    client.unregister_cuda_shared_memory()
    client.unregister_cuda_shared_memory("never_registered")
    assert cuda_regions(client, protocol) == []


def test_register_is_refused_saying_the_server_has_no_gpus(client, protocol, server):
    with pytest.raises(InferenceServerException) as refused:
        client.register_cuda_shared_memory("gpu_in", FAKE_RAW_HANDLE, 0, 64)
    message = refused.value.message()
    assert "failed to register CUDA shared memory region: 'gpu_in'" in message
    assert "no GPUs" in message
    expected = "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    assert refused.value.status() == expected
    assert cuda_regions(client, protocol) == []
    assert "Traceback" not in server.logs()


def test_rest_routes_answer_as_the_extension_says(server):
    base = f"{server.url}/v2/cudasharedmemory"
    status = httpx.get(f"{base}/status")
    assert (status.status_code, status.json()) == (200, [])
    assert httpx.get(f"{base}/region/r/status").status_code == 404
    assert httpx.post(f"{base}/unregister").status_code == 200
    assert httpx.post(f"{base}/region/r/unregister").status_code == 200
    register = httpx.post(
        f"{base}/region/r/register",
        json={"raw_handle": {"b64": FAKE_RAW_HANDLE}, "device_id": 0, "byte_size": 64},
    )
    assert register.status_code == 400
    assert "CUDA shared memory is unavailable" in register.json()["error"]


def test_server_metadata_lists_only_the_shared_memory_it_can_use(server):
    extensions = httpx.get(f"{server.url}/v2").json()["extensions"]
    assert "system_shared_memory" in extensions
    assert "cuda_shared_memory" not in extensions
