"""Triton's generate extension, for language models: ``POST
/v2/models/{m}[/versions/{v}]/generate`` answers ``{"text_input", "parameters"}`` with
one ``text_output``; ``/generate_stream`` sends each new piece as a server-sent event.

Errors are V2's ``{"error": "..."}`` with its status; an error after the stream has
begun is one more event carrying that object, as Triton does. The text output is the
generated text only (Triton's vLLM backend with ``exclude_input_in_output``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.errors import AiaasError, InvalidArgument
from aiaas.serve.limits import StreamSlots
from aiaas.serve.llm.types import SamplingParams
from aiaas.serve.protocol import generation, sse
from aiaas.serve.protocol.generation import Job
from aiaas.serve.provenance import HEADER as PROVENANCE_HEADER
from aiaas.serve.repository import ModelRepository

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
BodyReader = Callable[[Request], Awaitable[bytes]]


class GenerateParameters(BaseModel):
    """The sampling parameters Triton's vLLM backend reads from ``parameters``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = None
    ignore_eos: bool = False

    def sampling(self) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k, 0),
            seed=self.seed,
            stop=tuple(stop for stop in stops if stop),
            ignore_eos=self.ignore_eos,
        )


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    text_input: str = Field(min_length=1)
    parameters: GenerateParameters = GenerateParameters()


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except AiaasError as error:
            return _json({"error": error.message}, error.http_status)
        except Exception:
            log.exception("unexpected error serving %s", request.url.path)
            return _json({"error": "internal server error"}, 500)

    return guarded


class GenerateFrontEnd:
    def __init__(
        self,
        repository: ModelRepository,
        *,
        read_body: BodyReader,
        streams: StreamSlots,
        provenance_header: bool = False,
    ) -> None:
        self.repository = repository
        self.read_body = read_body
        self.streams = streams
        self.provenance_header = provenance_header

    def routes(self) -> list[Route]:
        paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
        return [
            Route(f"{path}/{verb}", _guarded(endpoint), methods=["POST"])
            for path in paths
            for verb, endpoint in (("generate", self.generate), ("generate_stream", self.stream))
        ]

    async def _start(
        self, request: Request
    ) -> tuple[dict[str, str], list[generation.Stream], dict[str, str] | None]:
        """The answer's head, its streams, and the headers naming the version generating."""
        body = _parse(await self.read_body(request))
        name, version = request.path_params["model"], request.path_params.get("version")
        loaded = self.repository.llm_version(name, version)
        job = Job(0, body.text_input, body.parameters.sampling(), uuid.uuid4().hex)
        started = generation.start(loaded.engine, [job])
        streams = await sse.unless_disconnected(started, request.receive)
        head = {"model_name": name, "model_version": str(loaded.version)}
        provenance = loaded.provenance.header
        headers = {PROVENANCE_HEADER: provenance} if self.provenance_header else None
        return head, streams or [], headers

    async def generate(self, request: Request) -> Response:
        head, streams, headers = await self._start(request)
        if not streams:
            return Response(status_code=499)
        text = await sse.unless_disconnected(_text(streams), request.receive)
        if text is None:
            return Response(status_code=499)
        return _json({**head, "text_output": text}, headers=headers)

    async def stream(self, request: Request) -> Response:
        release = self.streams.acquire(request.client.host if request.client else None)
        try:
            head, streams, headers = await self._start(request)
        except BaseException:
            release()
            raise
        if not streams:
            release()
            return Response(status_code=499)
        return sse.EventStreamResponse(_events(head, streams), headers, on_close=release)


def _parse(body: bytes) -> GenerateRequest:
    try:
        return GenerateRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidArgument(f"generate request: {where}: {first['msg']}") from None


async def _text(streams: list[generation.Stream]) -> str:
    parts = []
    async with contextlib.aclosing(generation.merged(streams)) as deltas:
        async for _, delta in deltas:
            parts.append(delta.text)
    return "".join(parts)


async def _events(head: dict[str, str], streams: list[generation.Stream]) -> AsyncIterator[bytes]:
    try:
        async with contextlib.aclosing(generation.merged(streams)) as deltas:
            async for _, delta in deltas:
                if delta.text:
                    yield sse.event({**head, "text_output": delta.text})
    except AiaasError as error:
        yield sse.event({"error": error.message})
    except Exception:
        log.exception("unexpected error while streaming a generation")
        yield sse.event({"error": "internal server error"})
