"""The hop: an EngineClient and an EngineService on a real ipc:// socket, in front of a
real DataPlane over real ONNX models, answer exactly what the DataPlane answers in
process, errors included; an engine that dies fails its callers at once, not at their
timeout, and the client carries on with the engine that replaces it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import models
import numpy as np
import pytest
from hop_processes import start_engine, until_answered

from aiaas import tensors
from aiaas.errors import AiaasError, InternalError, InvalidArgument, NotFound, Unavailable
from aiaas.serve import shared_memory
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.repository import ControlMode, ModelRepository
from aiaas.serve.sources import DirectorySource
from aiaas.serve.types import InferInput, InferRequest, RequestedOutput
from aiaas.serve.workers.hop import NOT_ANSWERING, EngineClient, EngineService
from aiaas.serve.workers.hop_arena import ARENA_BYTES

BATCHING = "max_batch_size: 64\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n"


@pytest.fixture(scope="module")
def repo(module_tmp: Path) -> Path:
    repo = module_tmp / "repo"
    models.save(models.add_sub(), repo, "add_sub", config="max_batch_size: 8")
    models.save(models.add_constant(0.5), repo, "shifted", config=BATCHING)
    models.save(models.identity("FP32", ("batch", "width")), repo, "big")
    for datatype in models.DATATYPES:
        models.save(models.identity(datatype), repo, f"identity_{datatype.lower()}")
    return repo


@pytest.fixture
def address() -> Iterator[str]:
    """A short path: a Unix socket's path may not be longer than 107 bytes."""
    folder = tempfile.mkdtemp(prefix="hop-")
    yield f"ipc://{folder}/engine"
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def engine(
    repo: Path,
    address: str,
    names: list[str],
    arena_bytes: int = ARENA_BYTES,
    **client_options: float,
) -> AsyncIterator[tuple[DataPlane, EngineService, EngineClient]]:
    repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
    await repository.start(names)
    dataplane = DataPlane(repository)
    service = EngineService(dataplane, address, arena_bytes=arena_bytes)
    running = asyncio.create_task(service.run())
    # Generous: the first call waits for the connection, however busy the machine is.
    options = {"connect_wait_s": 30.0, "arena_bytes": arena_bytes, **client_options}
    client = EngineClient(address, **options)  # type: ignore[arg-type]
    client.start()
    try:
        yield dataplane, service, client
    finally:
        await client.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await repository.close()


def tensor(name: str, data: np.ndarray) -> InferInput:
    return InferInput(name, tensors.datatype_of(data), tuple(data.shape), data)


def add_sub_request(**options: object) -> InferRequest:
    a = np.arange(8, dtype=np.int32).reshape(2, 4)
    b = np.full((2, 4), 3, dtype=np.int32)
    return InferRequest([tensor("a", a), tensor("b", b)], **options)  # type: ignore[arg-type]


def as_bytes(array: np.ndarray) -> list[bytes]:
    """BYTES as a client reads it: ONNX Runtime gives str, the wire gives bytes."""
    return [item if isinstance(item, bytes) else str(item).encode() for item in array.flat]


def test_an_answer_over_the_hop_is_the_one_the_data_plane_gives_in_process(repo, address):
    async def scenario() -> None:
        async with engine(repo, address, ["add_sub"]) as (dataplane, _, client):

            def request() -> InferRequest:
                return add_sub_request(
                    outputs=[RequestedOutput("difference")], id="req-7", parameters={"priority": 0}
                )

            remote = await client.infer("add_sub", "1", request())
            local = await dataplane.infer("add_sub", "1", request())
        assert remote.model_name == local.model_name == "add_sub"
        assert (remote.model_version, remote.id) == (local.model_version, "req-7")
        assert (remote.parameters, remote.provenance) == (local.parameters, local.provenance)
        assert [o.name for o in remote.outputs] == ["difference"]
        out, expected = remote.outputs[0], local.outputs[0]
        assert (out.datatype, out.shape, out.parameters) == ("INT32", (2, 4), expected.parameters)
        assert out.data.dtype == expected.data.dtype
        np.testing.assert_array_equal(out.data, np.arange(8).reshape(2, 4) - 3)

    asyncio.run(scenario())


def test_every_datatype_crosses_the_hop_unchanged(repo, address):
    names = [f"identity_{datatype.lower()}" for datatype in models.DATATYPES]

    async def scenario() -> None:
        async with engine(repo, address, names) as (_, _, client):
            for datatype in models.DATATYPES:
                sample = models.sample(datatype)
                request = InferRequest([InferInput("x", datatype, (1, 4), sample)])
                answer = await client.infer(f"identity_{datatype.lower()}", None, request)
                (out,) = answer.outputs
                assert (out.name, out.datatype, out.shape) == ("y", datatype, (1, 4))
                if datatype == "BYTES":
                    assert as_bytes(out.data) == list(sample.flat)
                else:
                    assert out.data.dtype == sample.dtype
                    np.testing.assert_array_equal(out.data, sample)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("name", "version", "request_of", "kind"),
    [
        ("nope", None, add_sub_request, NotFound),
        ("add_sub", "9", add_sub_request, NotFound),
        ("add_sub", "x", add_sub_request, InvalidArgument),
        (
            "add_sub",
            None,
            lambda: InferRequest([tensor("a", np.ones((2, 3), np.int32))]),
            InvalidArgument,
        ),
        (
            "add_sub",
            None,
            lambda: add_sub_request(parameters={"priority": "high"}),
            InvalidArgument,
        ),
        (
            "add_sub",
            None,
            lambda: add_sub_request(outputs=[RequestedOutput("product")]),
            InvalidArgument,
        ),
    ],
)
def test_an_engine_error_comes_back_as_the_same_kind_with_the_same_message(
    repo, address, name, version, request_of, kind
):
    async def scenario() -> tuple[AiaasError, AiaasError]:
        async with engine(repo, address, ["add_sub"]) as (dataplane, _, client):
            with pytest.raises(AiaasError) as remote:
                await client.infer(name, version, request_of())
            with pytest.raises(AiaasError) as local:
                await dataplane.infer(name, version, request_of())
            return remote.value, local.value

    remote, local = asyncio.run(scenario())
    assert type(remote) is type(local) is kind
    assert remote.message == local.message


def test_addressed_says_not_found_as_check_addressed_does_and_ready_is_the_engines(repo, address):
    async def scenario() -> None:
        async with engine(repo, address, ["add_sub"]) as (dataplane, _, client):
            assert await client.call("addressed", name="add_sub", version="1") is None
            for version in (None, "4"):
                with pytest.raises(NotFound) as remote:
                    await client.call("addressed", name="nope" if version is None else "add_sub",
                                      version=version)  # fmt: skip
                with pytest.raises(NotFound) as local:
                    dataplane.check_addressed("nope" if version is None else "add_sub", version)
                assert remote.value.message == local.value.message
            assert await client.call("ready") is False
            dataplane.started = True
            assert await client.call("ready") is True

    asyncio.run(scenario())


class Refused(NotFound):
    """A package's own kind of a protocol error."""


def test_an_engine_operations_failures_keep_their_kind_and_hide_our_bugs(repo, address):
    async def refuse() -> None:
        raise Refused("no such thing here")

    async def broken() -> None:
        raise RuntimeError("a bug with private details")

    async def scenario() -> None:
        async with engine(repo, address, []) as (_, service, client):
            service.ops.update(refuse=refuse, broken=broken)
            with pytest.raises(NotFound, match=r"^no such thing here$"):
                await client.call("refuse")
            with pytest.raises(InternalError) as bug:
                await client.call("broken")
            assert bug.value.message == "internal server error"
            with pytest.raises(InvalidArgument, match="no operation 'teleport'"):
                await client.call("teleport")
            assert await client.call("live") is True

    asyncio.run(scenario())


def test_classification_outputs_cross_the_hop_as_the_engine_made_them(repo, address):
    async def scenario() -> None:
        async with engine(repo, address, ["add_sub"]) as (dataplane, _, client):

            def request() -> InferRequest:
                return add_sub_request(outputs=[RequestedOutput("sum", {"classification": 2})])

            remote = (await client.infer("add_sub", None, request())).outputs[0]
            local = (await dataplane.infer("add_sub", None, request())).outputs[0]
        assert (remote.datatype, remote.shape) == ("BYTES", (2, 2))
        assert as_bytes(remote.data) == as_bytes(local.data)
        assert as_bytes(remote.data)[:2] == [b"6.000000:3", b"5.000000:2"]

    asyncio.run(scenario())


def test_shared_memory_tensors_are_read_and_written_by_the_engine(repo, address, shm_regions):
    import tritonclient.utils.shared_memory as shm

    a = np.arange(4, dtype=np.int32).reshape(1, 4)
    b = np.full((1, 4), 10, dtype=np.int32)
    in_name, in_key, in_handle = shm_regions(a.nbytes)
    out_name, out_key, out_handle = shm_regions(a.nbytes)
    shm.set_shared_memory_region(in_handle, [a])
    in_region = {shared_memory.REGION: in_name, shared_memory.BYTE_SIZE: a.nbytes}
    out_region = {shared_memory.REGION: out_name, shared_memory.BYTE_SIZE: a.nbytes}

    async def scenario() -> None:
        async with engine(repo, address, ["add_sub"]) as (dataplane, _, client):
            dataplane.shared_memory.register(in_name, in_key, 0, a.nbytes)
            dataplane.shared_memory.register(out_name, out_key, 0, a.nbytes)
            placeholder = np.empty(0, dtype=np.uint8)
            request = InferRequest(
                [InferInput("a", "INT32", (1, 4), placeholder, in_region), tensor("b", b)],
                outputs=[RequestedOutput("sum", out_region), RequestedOutput("difference")],
            )
            answer = await client.infer("add_sub", None, request)
            dataplane.shared_memory.close()
        in_memory, inline = answer.outputs
        assert in_memory.parameters == out_region
        assert in_memory.data.size == 0
        np.testing.assert_array_equal(inline.data, a - b)
        written = shm.get_contents_as_numpy(out_handle, np.int32, [1, 4])
        np.testing.assert_array_equal(written, a + b)

    asyncio.run(scenario())


def test_a_large_tensor_arrives_whole(repo, address):
    x = np.random.default_rng(0).random((1, 4 * 1024 * 1024), dtype=np.float32)  # 16 MiB

    async def scenario() -> None:
        async with engine(repo, address, ["big"]) as (_, _, client):
            answer = await client.infer("big", None, InferRequest([tensor("x", x)]))
        np.testing.assert_array_equal(answer.outputs[0].data, x)

    asyncio.run(scenario())


def test_large_tensors_cross_in_shared_memory_and_every_slot_comes_back(repo, address):
    """Tensors of 64 KiB and more go through each side's arena: many at once, more than
    an arena holds (those go in the socket), over and over, each answer its own; once the
    answers are dropped, both arenas are whole again (no slot is lost on either side)."""
    arena_bytes = 2 << 20
    rows = [np.full((1, 64 * 1024), i, dtype=np.float32) for i in range(12)]  # 256 KiB each
    assert len(rows) * rows[0].nbytes > arena_bytes

    async def scenario() -> None:
        async with engine(repo, address, ["big"], arena_bytes) as (_, service, client):
            for _ in range(5):
                answers = await asyncio.gather(
                    *(client.infer("big", None, InferRequest([tensor("x", x)])) for x in rows)
                )
                for x, answer in zip(rows, answers, strict=True):
                    np.testing.assert_array_equal(answer.outputs[0].data, x)
                del answer
            assert client.channel is not None
            assert client.channel.arena is not None
            (engine_side,) = service.connections
            replies = engine_side.arena
            assert replies is not None
            assert replies.free_bytes < replies.size
            del answers
            for _ in range(3):  # the frees travel before the next call
                await client.infer("big", None, InferRequest([tensor("x", rows[0][:, :4])]))
            calls = client.channel.arena
            await until_whole([calls, replies])

    asyncio.run(scenario())


async def until_whole(arenas: list) -> None:
    for _ in range(500):
        if all(arena.free_bytes == arena.size for arena in arenas):
            return
        await asyncio.sleep(0.01)
    raise AssertionError([arena.free_bytes for arena in arenas])


def test_many_concurrent_callers_each_get_their_own_answer(repo, address):
    async def scenario() -> None:
        async with engine(repo, address, ["shifted"]) as (dataplane, _, client):

            async def one(i: int) -> None:
                x = np.full((1, 4), i, dtype=np.float32)
                answer = await client.infer(
                    "shifted", None, InferRequest([tensor("x", x)], id=str(i))
                )
                assert answer.id == str(i)
                np.testing.assert_array_equal(answer.outputs[0].data, x + 0.5)

            await asyncio.gather(*(one(i) for i in range(300)))
            stats = (await dataplane.model_statistics("shifted", None))["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 300

    asyncio.run(scenario())


def test_a_call_the_engine_never_answers_is_unavailable_after_the_timeout(repo, address):
    async def scenario() -> None:
        async with engine(repo, address, [], timeout_s=0.3) as (_, service, client):
            service.ops["hang"] = lambda: asyncio.Event().wait()
            with pytest.raises(Unavailable, match=r"did not answer within 0\.3 s"):
                await client.call("hang")
            assert await client.call("live") is True

    asyncio.run(scenario())


def test_without_an_engine_a_call_is_refused_after_the_connect_wait(address):
    async def scenario() -> None:
        client = EngineClient(address, connect_wait_s=0.2)
        client.start()
        try:
            with pytest.raises(Unavailable) as refused:
                await client.call("live")
            assert refused.value.message == NOT_ANSWERING
        finally:
            await client.close()

    asyncio.run(scenario())


def test_the_first_connection_may_be_given_longer_than_a_lost_one(repo, address):
    """A model's process the engine has named may be slow to take a front end's first
    connection on a busy machine: that wait is the first one's; once connected, a lost
    peer is given up on after the short wait."""

    async def scenario() -> None:
        client = EngineClient(address, connect_wait_s=0.2, first_connect_wait_s=30)
        client.start()
        repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
        try:
            first = asyncio.create_task(client.call("live"))
            await asyncio.sleep(0.6)  # three short waits: still waiting for the first
            running = asyncio.create_task(EngineService(DataPlane(repository), address).run())
            assert await first is True
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            while client.connected:
                await asyncio.sleep(0.01)
            with pytest.raises(Unavailable):
                await client.call("live")
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_client_started_before_the_engine_binds_reaches_it_once_it_does(repo, address):
    async def scenario() -> None:
        client = EngineClient(address, connect_wait_s=30)
        client.start()
        try:
            repository = ModelRepository([DirectorySource(repo)], ControlMode.EXPLICIT)
            running = asyncio.create_task(EngineService(DataPlane(repository), address).run())
            assert await client.call("live") is True
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_killing_the_engine_fails_pending_calls_at_once_and_a_new_engine_takes_over(
    repo, address, tmp_path
):
    async def scenario() -> None:
        first = start_engine(repo, address, tmp_path / "first.log", ["add_sub"])
        second = None
        # Far longer than the test may take: only the disconnect can end these calls.
        client = EngineClient(address, timeout_s=600, connect_wait_s=5)
        client.start()
        try:
            assert await client.call("live") is True
            pending = [asyncio.create_task(client.call("hang")) for _ in range(3)]
            pending.append(asyncio.create_task(client.call("hang")))
            await asyncio.sleep(0.2)
            first.process.kill()
            async with asyncio.timeout(60):
                failures = await asyncio.gather(*pending, return_exceptions=True)
            assert all(isinstance(f, Unavailable) for f in failures), failures
            assert {f.message for f in failures} == {NOT_ANSWERING}
            with pytest.raises(Unavailable):
                await client.infer("add_sub", None, add_sub_request())
            second = start_engine(repo, address, tmp_path / "second.log", ["add_sub"])
            answer = await until_answered(client.infer, "add_sub", None, add_sub_request())
            np.testing.assert_array_equal(answer.outputs[0].data, np.arange(8).reshape(2, 4) + 3)
        finally:
            await client.close()
            first.stop()
            if second is not None:
                assert second.stop() == 0
        assert "Traceback" not in second.logs()

    asyncio.run(scenario())
