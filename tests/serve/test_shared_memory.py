"""System shared memory extension through tritonclient.http and its shared_memory
utilities: inputs read from and outputs written into the client's shm_regions, and every
misuse answered as a client error while the server stays up."""

from __future__ import annotations

from pathlib import Path

import httpx
import models
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from aiaas.tensors import to_raw

#: Against one process and against `--workers 2`: both must answer the same.
pytestmark = pytest.mark.both_workers


@pytest.fixture(scope="module")
def server(module_tmp: Path, module_server):
    repo = module_tmp / "repo"
    for datatype in ("FP32", "INT64", "UINT8", "FP16", "BOOL", "BYTES"):
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    return module_server(repo)


@pytest.fixture
def client(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.unregister_system_shared_memory()
    client.close()


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"alpha", b"", b"\x00nul", "gr\u00fc\u00df".encode()]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False, True, True]])
    dtype = {"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8, "FP16": np.float16}
    return np.array([[1, 2, 250, 7]], dtype=dtype[datatype])


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "UINT8", "FP16", "BOOL", "BYTES"])
def test_inputs_and_outputs_go_through_shared_memory(client, shm_regions, datatype):
    data = sample(datatype)
    raw = serialize_byte_tensor(data).item() if datatype == "BYTES" else to_raw(data)
    in_name, in_key, in_handle = shm_regions(len(raw) + 16)
    out_name, out_key, out_handle = shm_regions(len(raw) + 16)
    # the input sits at offset 16 of its region, to exercise offsets
    shm.set_shared_memory_region(in_handle, [np.frombuffer(raw, np.uint8)], offset=16)
    client.register_system_shared_memory(in_name, in_key, len(raw) + 16)
    client.register_system_shared_memory(out_name, out_key, len(raw) + 16)

    x = httpclient.InferInput("x", list(data.shape), datatype)
    x.set_shared_memory(in_name, len(raw), offset=16)
    y = httpclient.InferRequestedOutput("y")
    y.set_shared_memory(out_name, len(raw) + 16)
    result = client.infer(f"identity_{datatype.lower()}", [x], outputs=[y])

    output = result.get_output("y")
    assert output["parameters"]["shared_memory_byte_size"] == len(raw)
    assert "data" not in output
    if datatype == "BYTES":
        got = shm.get_contents_as_numpy(out_handle, np.object_, list(data.shape))
    else:
        got = shm.get_contents_as_numpy(out_handle, data.dtype, list(data.shape))
    np.testing.assert_array_equal(got, data)


def test_status_lists_registered_regions_and_unregister_removes_them(client, shm_regions):
    name, key, _ = shm_regions(64)
    client.register_system_shared_memory(name, key, 32, offset=8)
    status = client.get_system_shared_memory_status(name)
    assert status == [{"name": name, "key": key, "offset": 8, "byte_size": 32}]
    assert name in {row["name"] for row in client.get_system_shared_memory_status()}
    client.unregister_system_shared_memory(name)
    client.unregister_system_shared_memory(name)  # gone already: success, as Triton
    assert client.get_system_shared_memory_status() == []
    with pytest.raises(InferenceServerException, match="is not registered"):
        client.get_system_shared_memory_status(name)


def test_registration_misuse_is_refused(client, shm_regions, server):
    name, key, _ = shm_regions(64)
    with pytest.raises(InferenceServerException, match="unable to open"):
        client.register_system_shared_memory("ghost", "/aiaas_no_such_key", 8)
    with pytest.raises(InferenceServerException, match="past the end"):
        client.register_system_shared_memory(name, key, 64, offset=8)
    with pytest.raises(InferenceServerException, match="must look like"):
        client.register_system_shared_memory("bad", "../etc/passwd", 8)
    client.register_system_shared_memory(name, key, 64)
    with pytest.raises(InferenceServerException, match="already registered"):
        client.register_system_shared_memory(name, key, 64)
    bad_size = httpx.post(
        f"{server.url}/v2/systemsharedmemory/region/z/register",
        json={"key": key, "offset": 0, "byte_size": -1},
    )
    assert bad_size.status_code == 400
    assert "byte_size must be an integer >= 1" in bad_size.json()["error"]


def infer_from(client, region: str, byte_size: int, offset: int = 0):
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_shared_memory(region, byte_size, offset=offset)
    return client.infer("identity_fp32", [x])


def test_input_misuse_is_a_client_error(client, shm_regions, server):
    name, key, handle = shm_regions(16)
    shm.set_shared_memory_region(handle, [np.arange(4, dtype=np.float32)])
    client.register_system_shared_memory(name, key, 16)
    cases = [
        ((name, 16, 8), "outside shared memory region"),
        ((name, 12), r"raw data has 12 bytes but FP32 shape \[1, 4\] needs 16"),
        (("never-registered", 16), "is not registered"),
    ]
    for args, message in cases:
        with pytest.raises(InferenceServerException, match=message):
            infer_from(client, *args)
    np.testing.assert_array_equal(
        infer_from(client, name, 16).as_numpy("y"), np.arange(4, dtype=np.float32)[None]
    )
    out = httpclient.InferRequestedOutput("y")
    out.set_shared_memory(name, 8)
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="result is 16 bytes"):
        client.infer("identity_fp32", [x], outputs=[out])
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_a_region_that_disappeared_is_reported(client, server):
    name, key = "vanishing", "/aiaas_test_vanishing"
    handle = shm.create_shared_memory_region(name, key, 16)
    client.register_system_shared_memory(name, key, 16)
    shm.destroy_shared_memory_region(handle)
    with pytest.raises(InferenceServerException, match="no longer exists"):
        infer_from(client, name, 16)
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
