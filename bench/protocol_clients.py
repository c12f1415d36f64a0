"""One client session per wire for the protocol benchmark: REST JSON, REST binary,
gRPC and system shared memory, each through Triton's own Python clients, plus the
check that every mode answers the same numbers before any of them is timed."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

from bench import wire

Outputs = dict[str, np.ndarray]
MODES = ("REST JSON", "REST binary", "gRPC", "shared memory")


# ---- one client session per mode -------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    http: str  # host:port, as tritonclient wants it
    grpc: str


@dataclass
class Session:
    """One worker's client: `infer` sends the request's tensors and returns the outputs
    as numpy arrays; `close` releases everything the session made."""

    infer: Callable[[], Outputs]
    close: Callable[[], None]


def rest_session(endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs, binary: bool):
    client = httpclient.InferenceServerClient(endpoint.http)

    def infer() -> Outputs:
        inputs = [http_input(name, array, binary) for name, array in feed.items()]
        wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs]
        result = client.infer(model, inputs, outputs=wanted)
        return {name: result.as_numpy(name) for name in outputs}

    return Session(infer, client.close)


def grpc_client(url: str) -> grpcclient.InferenceServerClient:
    """tritonclient.grpc's own channel settings, plus a connection of its own: gRPC would
    otherwise put every worker's channel on one shared TCP connection, while each REST
    worker has its own."""
    keepalive = grpcclient.KeepAliveOptions()
    options = [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    return grpcclient.InferenceServerClient(url, channel_args=options)


def grpc_session(endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs):
    client = grpc_client(endpoint.grpc)

    def infer() -> Outputs:
        inputs = []
        for name, array in feed.items():
            item = grpcclient.InferInput(name, list(array.shape), wire.V2_DATATYPES[array.dtype])
            item.set_data_from_numpy(array)
            inputs.append(item)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
        result = client.infer(model, inputs, outputs=wanted)
        return {name: result.as_numpy(name) for name in outputs}

    return Session(infer, client.close)


def shm_session(endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs, worker: int):
    """One input and one output region for this worker, registered once. Each request
    still copies its inputs into the region and its outputs out of it: that is what a
    client whose data lives in numpy pays, and it keeps the comparison honest."""
    client = httpclient.InferenceServerClient(endpoint.http)
    tag = f"aiaas_bench_{os.getpid()}_{worker}"
    in_size = sum(a.nbytes for a in feed.values())
    out_size = sum(a.nbytes for a in outputs.values())
    made: list[tuple[str, object]] = []
    try:
        for name, size in ((f"{tag}_in", in_size), (f"{tag}_out", out_size)):
            made.append((name, shm.create_shared_memory_region(name, f"/{name}", size)))
            client.register_system_shared_memory(name, f"/{name}", size)
    except BaseException:
        _release(client, made)
        raise
    (in_name, in_handle), (out_name, out_handle) = made
    out_offsets = _offsets(outputs)

    def infer() -> Outputs:
        shm.set_shared_memory_region(in_handle, list(feed.values()))
        inputs, wanted = shm_tensors(in_name, out_name, feed, outputs)
        client.infer(model, inputs, outputs=wanted)
        return {
            name: np.array(shm.get_contents_as_numpy(
                out_handle, array.dtype, list(array.shape), offset=out_offsets[name]))
            for name, array in outputs.items()
        }  # fmt: skip

    return Session(infer, lambda: _release(client, made))


def shm_tensors(in_region: str, out_region: str, feed: Outputs, outputs: Outputs):
    """(inputs, requested outputs) pointing into the regions, tensors one after another."""
    inputs, offsets = [], _offsets(feed)
    for name, array in feed.items():
        item = httpclient.InferInput(name, list(array.shape), wire.V2_DATATYPES[array.dtype])
        item.set_shared_memory(in_region, array.nbytes, offset=offsets[name])
        inputs.append(item)
    wanted, offsets = [], _offsets(outputs)
    for name, array in outputs.items():
        item = httpclient.InferRequestedOutput(name)
        item.set_shared_memory(out_region, array.nbytes, offset=offsets[name])
        wanted.append(item)
    return inputs, wanted


def _release(client, made: list[tuple[str, object]]) -> None:
    """Unregister, then destroy, every region, whatever fails on the way; then close.
    An unregister refused (never registered, server gone) still destroys the region."""
    try:
        for name, handle in made:
            try:
                client.unregister_system_shared_memory(name)
            except Exception as error:  # refused, or the server is gone
                print(f"unregister {name}: {error}", file=sys.stderr)
            finally:
                shm.destroy_shared_memory_region(handle)
    finally:
        client.close()


def _offsets(arrays: Outputs) -> dict[str, int]:
    offsets, position = {}, 0
    for name, array in arrays.items():
        offsets[name] = position
        position += array.nbytes
    return offsets


def http_input(name: str, array: np.ndarray, binary: bool) -> httpclient.InferInput:
    item = httpclient.InferInput(name, list(array.shape), wire.V2_DATATYPES[array.dtype])
    item.set_data_from_numpy(array, binary_data=binary)
    return item


def open_session(mode: str, endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs,
                 worker: int) -> Session:  # fmt: skip
    if mode == "REST JSON":
        return rest_session(endpoint, model, feed, outputs, binary=False)
    if mode == "REST binary":
        return rest_session(endpoint, model, feed, outputs, binary=True)
    if mode == "gRPC":
        return grpc_session(endpoint, model, feed, outputs)
    return shm_session(endpoint, model, feed, outputs, worker)


# ---- checking and measuring ------------------------------------------------------------


def reference_outputs(endpoint: Endpoint, model: str, feed: Outputs, names: list[str]) -> Outputs:
    """The answer over REST binary, which the other modes must reproduce."""
    empty = {name: np.zeros(0) for name in names}
    session = rest_session(endpoint, model, feed, empty, binary=True)
    try:
        return session.infer()
    finally:
        session.close()


def check_modes(endpoint: Endpoint, model: str, feed: Outputs, reference: Outputs) -> None:
    """Every mode gives the reference numbers before any is timed, so a broken mode cannot
    post a fast figure. JSON carries float32 exactly (shortest repr round-trips)."""
    for mode in MODES:
        session = open_session(mode, endpoint, model, feed, reference, worker=0)
        try:
            got = session.infer()
        finally:
            session.close()
        for name, expected in reference.items():
            if got[name] is None or got[name].shape != expected.shape:
                raise RuntimeError(f"{model} {mode}: output {name} missing or misshapen")
            np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{model} {mode} disagrees on {name}")  # fmt: skip


def wire_sizes(endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs) -> dict:
    """(request body, response body) bytes of one inference per mode, HTTP and HTTP/2
    headers left out: for gRPC the framed protobuf messages tritonclient.grpc sends."""
    from tritonclient.grpc import _utils as grpc_utils

    sizes = {}
    for mode, binary in (("REST JSON", False), ("REST binary", True)):
        inputs = [http_input(name, array, binary) for name, array in feed.items()]
        wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in outputs]
        sizes[mode] = _http_sizes(endpoint, model, inputs, wanted)
    inputs, wanted = [], []
    for name, array in feed.items():
        item = grpcclient.InferInput(name, list(array.shape), wire.V2_DATATYPES[array.dtype])
        item.set_data_from_numpy(array)
        inputs.append(item)
    wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
    request = grpc_utils._get_inference_request(
        model, inputs, "", "", wanted, 0, False, False, 0, None, None
    )
    client = grpc_client(endpoint.grpc)
    try:
        response = client.infer(model, inputs, outputs=wanted).get_response()
    finally:
        client.close()
    sizes["gRPC"] = (5 + request.ByteSize(), 5 + response.ByteSize())
    sizes["shared memory"] = _shm_sizes(endpoint, model, feed, outputs)
    return sizes


def _http_sizes(endpoint: Endpoint, model: str, inputs: list, wanted: list) -> tuple[int, int]:
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, wanted)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    response = httpx.post(f"http://{endpoint.http}/v2/models/{model}/infer", content=body,
                          headers=headers, timeout=60)  # fmt: skip
    response.raise_for_status()
    return len(body), len(response.content)


def _shm_sizes(endpoint: Endpoint, model: str, feed: Outputs, outputs: Outputs):
    """The shared-memory request names regions instead of carrying tensors."""
    session = shm_session(endpoint, model, feed, outputs, worker=999)
    try:
        tag = f"aiaas_bench_{os.getpid()}_999"
        inputs, wanted = shm_tensors(f"{tag}_in", f"{tag}_out", feed, outputs)
        return _http_sizes(endpoint, model, inputs, wanted)
    finally:
        session.close()


# ---- the suite -------------------------------------------------------------------------
