"""What a `--workers` front end does not answer itself goes to the engine process as
it came: HTTP requests to the engine's private Unix socket (httpcore, httpx's own
transport, so the request target travels byte for byte, unnormalised), streamed both
ways so that server-sent events arrive token by token; gRPC calls to the engine's
`unix:` address as raw bytes with their metadata, status and trailing metadata.

Load/unload, metadata, statistics, shared memory, /v1, /ui, /metrics and readiness so
behave exactly as in one process, because one process answers them. The client's
address goes along (X-Forwarded-For, overwriting any the client sent), so per-client
rules there still see the real client. When the engine does not answer, the client
gets 503 / UNAVAILABLE at once, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpcore
import orjson
from starlette.types import Message, Receive, Scope, Send

from aiaas.errors import AiaasError, InvalidArgument, Unavailable
from aiaas.serve.protocol import sse
from aiaas.serve.protocol.grpc import FORWARDED_FOR, peer_host
from aiaas.serve.protocol.grpc_server import SERVICE
from aiaas.serve.protocol.openai_errors import envelope
from aiaas.serve.workers.hop import NOT_ANSWERING

log = logging.getLogger("aiaas.serve.workers")

#: The same words as an infer call's over the hop when the engine is down.
ENGINE_DOWN = NOT_ANSWERING
#: Headers of one connection, not of the request (RFC 9110 7.6.1), and the ones the
#: front end sets itself.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",  # the front end answers 100-continue to its client itself
        b"x-forwarded-for",
        b"x-forwarded-proto",
    }
)
_NOT_RELAYED_BACK = _HOP_BY_HOP | {b"date"}  # the front end's server dates its answers
_NETWORK_ERRORS = (httpcore.NetworkError, httpcore.RemoteProtocolError)


class HttpPassthrough:
    """An ASGI app that relays each HTTP request to the engine's Unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self._pool = httpcore.AsyncConnectionPool(uds=str(socket_path), max_connections=None)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets; lifespan is the front end's own
            return
        body_done = asyncio.Event()
        try:
            request = httpcore.Request(
                scope["method"],
                httpcore.URL(scheme=b"http", host=b"engine", port=None, target=_target(scope)),
                headers=_request_headers(scope),
                content=_request_body(receive, body_done),
            )
            response = await self._pool.handle_async_request(request)
        except _NETWORK_ERRORS:
            await _answer(scope, send, Unavailable(ENGINE_DOWN), retry_after=True)
            return
        except httpcore.LocalProtocolError as error:  # a header h11 will not write
            await _answer(scope, send, InvalidArgument(f"the request cannot be passed on: {error}"))
            return
        try:
            await _relay_response(response, receive, send, body_done)
        except _NETWORK_ERRORS as error:
            # The status is sent: returning unfinished makes uvicorn cut the connection,
            # so the client sees a broken answer, never a complete-looking short one.
            log.warning("the engine process stopped answering mid-response: %s", error)
        finally:
            await response.aclose()


async def _relay_response(
    response: httpcore.Response, receive: Receive, send: Send, body_done: asyncio.Event
) -> None:
    """Status and headers, then each chunk as the engine writes it; a client that leaves
    closes the engine's response too, so the engine sees the disconnect (and frees what
    the request held, such as a stream slot)."""
    headers = [
        (name.lower(), value)
        for name, value in response.headers
        if name.lower() not in _NOT_RELAYED_BACK
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})

    async def after_the_body() -> Message:
        # Until the request body is read, `receive` is the body's; a disconnect then
        # fails the request to the engine instead.
        await body_done.wait()
        return await receive()

    await sse.unless_disconnected(_relay_body(response, send), after_the_body)


async def _relay_body(response: httpcore.Response, send: Send) -> None:
    stream: Any = response.stream
    async for chunk in stream:
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _request_body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise httpcore.WriteError("the client disconnected before sending the body")
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    finally:
        done.set()


def _target(scope: Scope) -> bytes:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return raw_path + b"?" + query if query else raw_path


def _request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = [(name, value) for name, value in scope["headers"] if name not in _HOP_BY_HOP]
    names = {name for name, _ in headers}
    if b"host" not in names:
        headers.append((b"host", b"engine"))
    if b"content-length" not in names and _has_body(scope):
        headers.append((b"transfer-encoding", b"chunked"))
    client = scope.get("client")
    if client:
        headers.append((b"x-forwarded-for", str(client[0]).encode("latin-1")))
    headers.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()))
    return headers


def _has_body(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope["headers"]
    )


async def _answer(
    scope: Scope, send: Send, error: AiaasError, *, retry_after: bool = False
) -> None:
    """The error in the shape of the route asked: OpenAI's envelope on /v1, V2's elsewhere."""
    body = envelope(error) if scope["path"].startswith("/v1/") else {"error": error.message}
    content = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


# ---- gRPC -----------------------------------------------------------------------------

#: Metadata gRPC itself sets on each call; the channel to the engine sets its own.
_CALL_METADATA = frozenset({"user-agent", FORWARDED_FOR})
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # A restarted engine is found again within a fraction of a second, not gRPC's
    # default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class GrpcPassthrough(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every RPC of the inference service the front end does not answer itself, relayed
    as raw bytes (no parsing, no re-encoding); other services stay UNIMPLEMENTED."""

    def __init__(self, engine_address: str) -> None:
        self.engine_address = engine_address
        self._channel: grpc.aio.Channel | None = None

    def open(self) -> None:
        """On the running loop: a grpc.aio channel belongs to the loop it was made on."""
        self._channel = grpc.aio.insecure_channel(self.engine_address, options=_CHANNEL_OPTIONS)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if not method.startswith(f"/{SERVICE}/"):
            return None
        return grpc.unary_unary_rpc_method_handler(self._relay(method))

    def _relay(self, method: str) -> Any:
        async def relay(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            channel = self._channel
            if channel is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, ENGINE_DOWN)
            assert channel is not None
            call = channel.unary_unary(method)(
                request, metadata=_forwarded_metadata(context), timeout=context.time_remaining()
            )
            try:
                response: bytes = await call
            except grpc.aio.AioRpcError as error:
                code, details = error.code(), error.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE and not _connected(channel):
                    details = ENGINE_DOWN
                await context.abort(code, details, error.trailing_metadata() or ())
            context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
            return response

        return relay


def _forwarded_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, Any]]:
    """The client's metadata as sent, and its address in place of any it claimed."""
    metadata = [
        (key, value)
        for key, value in context.invocation_metadata() or ()
        if key not in _CALL_METADATA and not key.startswith((":", "grpc-"))
    ]
    host = peer_host(context.peer())
    if host is not None:
        metadata.append((FORWARDED_FOR, host))
    return metadata


def _connected(channel: grpc.aio.Channel) -> bool:
    """An UNAVAILABLE on a connected channel is the engine's own answer (a model not
    ready); on a broken one it is the engine process being down."""
    return bool(channel.get_state() == grpc.ChannelConnectivity.READY)
