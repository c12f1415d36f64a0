"""The REST and gRPC front ends over a RemoteDataPlane answer infer calls as they do over
the DataPlane itself: the same status and body for good requests, for bad bodies, and
for unknown models (404 / NOT_FOUND whatever the body, as before the hop existed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import models
import numpy as np
import pytest
from hop_processes import start_engine
from ports import free_port
from tritonclient.grpc import service_pb2, service_pb2_grpc

from aiaas.admin import AdminGuard
from aiaas.errors import NotFound
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.limits import RequestLimits
from aiaas.serve.protocol.rest import RestFrontEnd
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource
from aiaas.serve.types import InferRequest
from aiaas.serve.workers import remote as remote_module
from aiaas.serve.workers.hop import EngineClient, EngineService
from aiaas.serve.workers.remote import RemoteDataPlane


@pytest.fixture(scope="module")
def repo(module_tmp: Path) -> Path:
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 8")
    return repo


@pytest.fixture
def address() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="hop-")
    yield f"ipc://{folder}/engine"
    shutil.rmtree(folder, ignore_errors=True)


def v2_body(a_shape: list[int] | None = None) -> bytes:
    shape = a_shape or [1, 4]
    inputs = [
        {
            "name": "a",
            "datatype": "INT32",
            "shape": shape,
            "data": list(range(int(np.prod(shape)))),
        },
        {"name": "b", "datatype": "INT32", "shape": [1, 4], "data": [10, 10, 10, 10]},
    ]
    return json.dumps({"inputs": inputs, "id": "q"}).encode()


CASES = [
    ("/v2/models/add_sub/infer", v2_body(), {}),
    ("/v2/models/add_sub/versions/1/infer", v2_body(), {}),
    ("/v2/models/nope/infer", v2_body(), {}),
    ("/v2/models/add_sub/infer", b"not json", {}),
    ("/v2/models/nope/infer", b"not json", {}),
    ("/v2/models/add_sub/versions/9/infer", b"not json", {}),
    ("/v2/models/nope/infer", b"garbage", {"content-encoding": "gzip"}),
    ("/v2/models/add_sub/infer", b"garbage", {"content-encoding": "gzip"}),
    ("/v2/models/add_sub/infer", v2_body([1, 3]), {}),
    ("/v2/models/bad%01name/infer", b"not json", {}),
]


@contextlib.asynccontextmanager
async def two_front_ends(
    repo: Path, address: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of a RestFrontEnd over the DataPlane and of one over the hop to it."""
    repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
    await repository.start(["add_sub"])
    dataplane = DataPlane(repository)
    running = asyncio.create_task(EngineService(dataplane, address).run())
    engine = EngineClient(address)
    engine.start()
    remote = RemoteDataPlane(engine, RequestLimits())
    apps = [
        RestFrontEnd(plane, max_request_bytes=1 << 20, admin=AdminGuard(None))  # type: ignore[arg-type]
        for plane in (dataplane, remote)
    ]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=rest.with_fast_infer(rest.app())),
            base_url="http://front-end",
        )
        for rest in apps
    ]
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.aclose()
        await engine.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await repository.close()


def test_rest_over_the_hop_answers_every_infer_call_as_in_one_process(repo, address):
    async def scenario() -> list[tuple[int, object, int, object]]:
        answers = []
        async with two_front_ends(repo, address) as (local, remote):
            for path, body, headers in CASES:
                here = await local.post(path, content=body, headers=headers)
                there = await remote.post(path, content=body, headers=headers)
                answers.append((here.status_code, here.json(), there.status_code, there.json()))
        return answers

    answers = asyncio.run(scenario())
    for (path, body, _), (status, content, hop_status, hop_content) in zip(
        CASES, answers, strict=True
    ):
        assert (hop_status, hop_content) == (status, content), (path, body)
    statuses = [status for status, *_ in answers]
    assert statuses == [200, 200, 404, 400, 404, 404, 404, 400, 400, 400]
    assert answers[0][1]["outputs"][0]["data"] == [10, 11, 12, 13]


def raw_request(model: str, raw_inputs: int) -> service_pb2.ModelInferRequest:
    """add_sub's inputs in raw contents; fewer raw entries than inputs is a bad message."""
    request = service_pb2.ModelInferRequest(model_name=model, id="g")
    for name in ("a", "b"):
        tensor = request.inputs.add(name=name, datatype="INT32")
        tensor.shape.extend([1, 4])
    for value in range(raw_inputs):
        request.raw_input_contents.append(np.full(4, value + 1, dtype="<i4").tobytes())
    return request


def test_grpc_over_the_hop_answers_and_names_an_unknown_model_before_a_bad_message(
    repo, address, tmp_path
):
    port = free_port()
    engine = start_engine(
        repo, address, tmp_path / "engine.log", ["add_sub"], "--grpc-port", str(port),
        wait_for="grpc",
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            answer = stub.ModelInfer(raw_request("add_sub", 2), timeout=30)
            assert [o.name for o in answer.outputs] == ["sum", "difference"]
            assert np.frombuffer(answer.raw_output_contents[0], "<i4").tolist() == [3, 3, 3, 3]
            assert answer.id == "g"
            for model, code in (("nope", grpc.StatusCode.NOT_FOUND),
                                ("add_sub", grpc.StatusCode.INVALID_ARGUMENT)):  # fmt: skip
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ModelInfer(raw_request(model, 1), timeout=30)
                assert refused.value.code() == code
            assert "expected 2 raw_input_contents" in refused.value.details()
    finally:
        assert engine.stop() == 0
    assert "Traceback" not in engine.logs()


def test_made_up_model_names_do_not_grow_a_front_ends_routes_without_bound(repo, address):
    """Each unknown name is asked of the engine (404) and remembered for a moment; a
    client inventing names keeps the table at its bound, not at one entry a name."""

    async def scenario() -> tuple[int, int]:
        repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
        running = asyncio.create_task(EngineService(DataPlane(repository), address).run())
        engine = EngineClient(address)
        engine.start()
        plane = RemoteDataPlane(engine, RequestLimits())
        refused = 0

        async def ask(name: str) -> None:
            nonlocal refused
            with contextlib.suppress(NotFound):
                await plane.infer(name, None, InferRequest(inputs=[]))
                return
            refused += 1

        try:
            names = [f"made-up-{i}" for i in range(remote_module._MAX_LOCAL_ROUTES + 500)]
            for start in range(0, len(names), 256):
                await asyncio.gather(*(ask(name) for name in names[start : start + 256]))
            return refused, len(plane._routes)
        finally:
            await plane.close()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    refused, kept = asyncio.run(scenario())
    assert refused == remote_module._MAX_LOCAL_ROUTES + 500
    assert kept <= remote_module._MAX_LOCAL_ROUTES
