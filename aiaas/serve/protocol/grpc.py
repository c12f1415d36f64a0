"""``inference.GRPCInferenceService`` over gRPC (grpcio's asyncio API).

Translates messages to data-plane calls and results back, nothing more: the same
DataPlane the REST front end calls, so validation, batching, statistics and error
messages are identical on both wires. Knows nothing about models or ONNX and never
imports the REST front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc

from aiaas.admin import AdminGuard
from aiaas.errors import AiaasError, InvalidArgument, NotFound
from aiaas.serve.protocol import grpc_codec as codec
from aiaas.serve.protocol.proto import grpc_service_pb2 as pb
from aiaas.serve.protocol.proto import grpc_service_pb2_grpc as pb_grpc
from aiaas.serve.provenance import HEADER as PROVENANCE_HEADER

if TYPE_CHECKING:  # the front-end processes run no model: no onnxruntime there
    from aiaas.serve.dataplane import DataPlane

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")
Item = TypeVar("Item")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Method = Callable[[Any, Request, Context], Awaitable[Response]]

INTERNAL_MESSAGE = "internal server error"


def status_of(error: BaseException, rpc: str) -> tuple[grpc.StatusCode, str]:
    """One table from errors to gRPC status: each error kind names its own code.

    Anything that is not ours is our bug: the client gets INTERNAL and a generic
    message, the traceback goes to the server log only.
    """
    if isinstance(error, AiaasError):
        code = getattr(grpc.StatusCode, error.grpc_code, grpc.StatusCode.INTERNAL)
        return code, error.message
    log.error("unexpected error serving gRPC %s", rpc, exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def _guarded(method: Method[Request, Response]) -> Method[Request, Response]:
    """The one place a unary RPC's exception becomes a gRPC status."""

    @functools.wraps(method)
    async def guarded(self: Any, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except Exception as error:
            code, message = status_of(error, method.__name__)
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover

    return guarded


def _unimplemented(rpc: str) -> Method[Any, Any]:
    """An RPC Triton has and aiaas does not: a plain UNIMPLEMENTED, no traceback logged."""

    async def unimplemented(self: Any, request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"aiaas does not implement {rpc}")

    return unimplemented


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The RPCs aiaas serves; trace and log settings are UNIMPLEMENTED."""

    TraceSetting = _unimplemented("TraceSetting")
    LogSettings = _unimplemented("LogSettings")

    def __init__(
        self, dataplane: DataPlane, admin: AdminGuard, *, provenance_header: bool = False
    ) -> None:
        self.dataplane = dataplane
        self.admin = admin
        #: Answers name the version that computed them in trailing metadata.
        self.provenance_header = provenance_header
        #: Set when the server begins to stop: open streams take no more requests.
        self.stopping = asyncio.Event()

    def _authorize(self, context: Context, action: str) -> None:
        """Admin RPCs: the token comes as `authorization` metadata, as HTTP's header."""
        metadata = dict(context.invocation_metadata() or ())
        self.admin.check(metadata.get("authorization"), client_host(context), action)

    # ---- health and metadata -------------------------------------------------------

    @_guarded
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_guarded
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @_guarded
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        # As Triton: an unknown model or version is "not ready", not an error.
        try:
            ready = self.dataplane.model_ready(
                request.name, codec.optional_version(request.version)
            )
        except NotFound:
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    @_guarded
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return codec.server_metadata(self.dataplane.server_metadata())

    @_guarded
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        version = codec.optional_version(request.version)
        return codec.model_metadata(self.dataplane.model_metadata(request.name, version))

    @_guarded
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        version = codec.optional_version(request.version)
        return codec.model_config(self.dataplane.model_config(request.name, version))

    @_guarded
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        name = request.name or None
        version = codec.optional_version(request.version) if name else None
        return codec.model_statistics(await self.dataplane.model_statistics(name, version))

    # ---- model repository ----------------------------------------------------------

    @_guarded
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        return codec.repository_index(self.dataplane.repository.index(request.ready))

    @_guarded
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        self._authorize(context, "loading a model")
        parameters = codec.decode_parameters(request.parameters)
        await self.dataplane.load(request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    @_guarded
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        self._authorize(context, "unloading a model")
        await self.dataplane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- system shared memory ------------------------------------------------------

    @_guarded
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        regions = self.dataplane.shared_memory.status(request.name or None)
        return codec.shared_memory_status(regions)

    @_guarded
    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self._authorize(context, "registering shared memory")
        if not request.name:
            raise InvalidArgument("a shared memory region needs a non-empty 'name'")
        await self.dataplane.register_shared_memory(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    @_guarded
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._authorize(context, "unregistering shared memory")
        # As Triton: an empty name unregisters every region.
        await self.dataplane.unregister_shared_memory(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()

    # ---- CUDA shared memory (a server without GPUs) ----------------------------------

    @_guarded
    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: Context
    ) -> pb.CudaSharedMemoryStatusResponse:
        regions = self.dataplane.cuda_shared_memory.status(request.name or None)
        return codec.cuda_shared_memory_status(regions)

    @_guarded
    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: Context
    ) -> pb.CudaSharedMemoryRegisterResponse:
        self._authorize(context, "registering shared memory")
        self.dataplane.cuda_shared_memory.register(request.name)
        return pb.CudaSharedMemoryRegisterResponse()

    @_guarded
    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: Context
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        self._authorize(context, "unregistering shared memory")
        # As Triton: an empty name unregisters every region.
        self.dataplane.cuda_shared_memory.unregister(request.name or None)
        return pb.CudaSharedMemoryUnregisterResponse()

    # ---- inference -----------------------------------------------------------------

    async def _infer(self, request: pb.ModelInferRequest) -> tuple[pb.ModelInferResponse, str]:
        """The answer and the provenance of the version that computed it."""
        version = codec.optional_version(request.model_version)
        self.dataplane.check_addressed(request.model_name, version)
        try:
            infer_request = codec.decode_infer_request(request, self.dataplane.limits)
        except AiaasError:
            # An unknown model is NOT_FOUND whatever the message: a remote data plane knows
            # only now.
            await self.dataplane.confirm_addressed(request.model_name, version)
            raise
        response = await self.dataplane.infer(request.model_name, version, infer_request)
        return codec.encode_infer_response(response), response.provenance

    @_guarded
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        answer, provenance = await self._infer(request)
        if self.provenance_header:
            context.set_trailing_metadata(((PROVENANCE_HEADER, provenance),))
        return answer

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Requests of a stream run concurrently (so they can share a batch) and are
        answered as they finish; a failed one is reported in ``error_message``, as
        Triton does, and the stream goes on."""
        try:
            release = await self.dataplane.acquire_stream(client_host(context))
        except AiaasError as error:
            code, message = status_of(error, "ModelStreamInfer")
            await context.abort(code, message)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_stream(request_iterator, answers))
        answered_by: dict[str, None] = {}
        try:
            while (answer := await answers.get()) is not None:
                provenance = answer.infer_response.parameters.get(PROVENANCE_HEADER)
                if provenance is not None:
                    answered_by[provenance.string_param] = None
                yield answer
        finally:
            release()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        # One entry per version that answered on this stream, in the order they first did.
        context.set_trailing_metadata(tuple((PROVENANCE_HEADER, v) for v in answered_by))

    async def _read_stream(
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None],
    ) -> None:
        pending: set[asyncio.Task[None]] = set()
        try:
            async for request in _until(request_iterator, self.stopping):
                task = asyncio.create_task(self._stream_one(request, answers))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
        finally:
            for task in pending:
                task.cancel()
            answers.put_nowait(None)

    async def _stream_one(
        self,
        request: pb.ModelInferRequest,
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None],
    ) -> None:
        try:
            response, provenance = await self._infer(request)
            if self.provenance_header:
                # A stream's answers may come from different versions: each names its own.
                response.parameters[PROVENANCE_HEADER].string_param = provenance
            answer = pb.ModelStreamInferResponse(infer_response=response)
        except Exception as error:
            _, message = status_of(error, "ModelStreamInfer")
            answer = pb.ModelStreamInferResponse(
                error_message=message,
                infer_response=pb.ModelInferResponse(
                    model_name=request.model_name,
                    model_version=request.model_version,
                    id=request.id,
                ),
            )
        answers.put_nowait(answer)


#: The metadata a `--workers` front end names its client's address in.
FORWARDED_FOR = "x-forwarded-for"


def client_host(context: Context) -> str | None:
    """The client's address. A peer on a Unix socket can only be one of this server's own
    `--workers` front ends (only the engine process listens on one, in a private
    directory): the address it forwards is the client's."""
    peer = context.peer()
    if peer and peer.startswith("unix:"):
        forwarded = dict(context.invocation_metadata() or ()).get(FORWARDED_FOR)
        return forwarded if isinstance(forwarded, str) else None
    return peer_host(peer)


def peer_host(peer: str | None) -> str | None:
    """The address of a gRPC peer (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`), no port."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, _, _ = rest.rpartition(":")
    return host.strip("[]") or None


async def _until(requests: AsyncIterator[Item], stopping: asyncio.Event) -> AsyncIterator[Item]:
    """A stream's requests until the client ends it or the server begins to stop, so that
    an idle open stream cannot hold a graceful shutdown for its whole grace period."""
    stopped = asyncio.ensure_future(stopping.wait())
    following: asyncio.Future[Item] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(requests))
            await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                return
            try:
                request = following.result()
            except StopAsyncIteration:
                return
            yield request
    finally:
        # Also when the RPC ends under us: a read left pending must not outlive it.
        stopped.cancel()
        if following is not None:
            following.cancel()
