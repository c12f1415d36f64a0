"""Request bodies for the load generators, built once per model: V2 JSON, V2 with the
binary tensor extension, and a framed gRPC ModelInferRequest (raw contents).

The gRPC message comes from tritonclient's own generated module: what a Triton
client sends is what is measured."""

from __future__ import annotations

import json
import struct

import numpy as np

V2_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


def json_body(feed: dict[str, np.ndarray]) -> bytes:
    inputs = [
        {"name": name, "datatype": V2_DATATYPES[a.dtype], "shape": list(a.shape),
         "data": a.ravel().tolist()}
        for name, a in feed.items()
    ]  # fmt: skip
    return json.dumps({"inputs": inputs}).encode()


def binary_body(feed: dict[str, np.ndarray], outputs: list[str]) -> tuple[bytes, int]:
    """(body, JSON header length): inputs and outputs all as raw tensors."""
    header = {
        "inputs": [
            {"name": name, "datatype": V2_DATATYPES[a.dtype], "shape": list(a.shape),
             "parameters": {"binary_data_size": a.nbytes}}
            for name, a in feed.items()
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    }  # fmt: skip
    head = json.dumps(header).encode()
    return head + b"".join(np.ascontiguousarray(a).tobytes() for a in feed.values()), len(head)


def grpc_body(model: str, feed: dict[str, np.ndarray]) -> bytes:
    """One gRPC message frame: flag byte 0 (not compressed), big-endian length, protobuf."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in feed.items():
        tensor = request.inputs.add(name=name, datatype=V2_DATATYPES[array.dtype])
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    payload = request.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
