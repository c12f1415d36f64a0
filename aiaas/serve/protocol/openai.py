"""OpenAI's API over HTTP (/v1/models, /v1/completions, /v1/chat/completions,
/v1/embeddings), on the same app and port as V2.

Translation only: bodies become engine calls (``SamplingParams`` per choice) or
embedding calls, and the engine's deltas become OpenAI's answers or server-sent
chunks. Every failure is answered in OpenAI's error envelope; ``--api-key``, when
set, guards these routes the way OpenAI's clients send it (``Authorization: Bearer``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aiaas.errors import AiaasError, NotFound, Unauthenticated
from aiaas.serve.dataplane import DataPlane
from aiaas.serve.embedding import Embedder, embedding_model_names
from aiaas.serve.llm.types import SamplingParams
from aiaas.serve.protocol import generation, sse
from aiaas.serve.protocol import openai_responses as bodies
from aiaas.serve.protocol.generation import Job
from aiaas.serve.protocol.openai_errors import OpenAIError, envelope, internal_envelope
from aiaas.serve.protocol.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse,
)
from aiaas.serve.provenance import HEADER as PROVENANCE_HEADER
from aiaas.serve.repository import ModelVersion

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
BodyReader = Callable[[Request], Awaitable[bytes]]
_OWNER = "aiaas"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


class OpenAIFrontEnd:
    def __init__(
        self,
        dataplane: DataPlane,
        *,
        read_body: BodyReader,
        api_key: str | None = None,
        provenance_header: bool = False,
    ) -> None:
        self.dataplane = dataplane
        self.provenance_header = provenance_header
        self.repository = dataplane.repository
        self.read_body = read_body
        self.api_key = api_key or None
        self.embedder = Embedder(dataplane)
        self.started = int(time.time())

    def routes(self) -> list[Route]:
        table: list[tuple[str, Endpoint, str]] = [
            ("/v1/models", self.list_models, "GET"),
            ("/v1/models/{model:path}", self.get_model, "GET"),
            ("/v1/completions", self.completions, "POST"),
            ("/v1/chat/completions", self.chat_completions, "POST"),
            ("/v1/embeddings", self.embeddings, "POST"),
        ]
        routes = [Route(path, self._guarded(fn), methods=[method]) for path, fn, method in table]
        # Last: any other /v1 path is answered in OpenAI's shape too, as OpenAI does.
        unknown = Route("/v1/{rest:path}", self._guarded(self.unknown_route), methods=_METHODS)
        return [*routes, unknown]

    def _guarded(self, endpoint: Endpoint) -> Endpoint:
        """The one place /v1 errors become OpenAI's envelope (and the API key is checked)."""

        async def guarded(request: Request) -> Response:
            try:
                self._authorize(request)
                return await endpoint(request)
            except AiaasError as error:
                param = "model" if error.http_status == 404 else None
                return _json(envelope(error, param), error.http_status)
            except Exception:
                log.exception("unexpected error serving %s %s", request.method, request.url.path)
                return _json(internal_envelope(), 500)

        return guarded

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise Unauthenticated("incorrect API key provided")

    async def unknown_route(self, request: Request) -> Response:
        raise OpenAIError(f"Invalid URL ({request.method} {request.url.path})", status=404)

    # ---- models ----------------------------------------------------------------------

    def _model_names(self) -> list[str]:
        names = set(self.repository.llm_model_names()) | set(embedding_model_names(self.dataplane))
        return sorted(names)

    def _model_card(self, name: str) -> dict[str, Any]:
        """OpenAI's model object, plus where the version served now came from (its
        clients keep fields they do not know)."""
        origin = self.repository.get(name).provenance.card()
        card = {"id": name, "object": "model", "created": self.started, "owned_by": _OWNER}
        return {**card, "lineage": origin}

    def _headers(self, provenance: str) -> dict[str, str] | None:
        return {PROVENANCE_HEADER: provenance} if self.provenance_header else None

    async def list_models(self, request: Request) -> Response:
        return _json({"object": "list", "data": [self._model_card(n) for n in self._model_names()]})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self._model_names():
            raise NotFound(f"The model '{name}' does not exist")
        return _json(self._model_card(name))

    # ---- generation ------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        body = parse(CompletionRequest, await self.read_body(request))
        loaded = self.repository.llm_version(body.model)
        engine = loaded.engine
        assert engine is not None
        params = _params(body, body.max_tokens, body.logprobs, engine.defaults)
        jobs = _jobs(body.prompts(), params, body.n, body.seed)
        fmt = bodies.CompletionFormat(with_logprobs=body.logprobs is not None)
        return await self._generate(request, loaded, body, jobs, fmt)

    async def chat_completions(self, request: Request) -> Response:
        body = parse(ChatCompletionRequest, await self.read_body(request))
        loaded = self.repository.llm_version(body.model)
        engine = loaded.engine
        assert engine is not None
        messages = [message.as_template_input() for message in body.messages]
        text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        # The template writes the special tokens itself, as Hugging Face's tokenize=True does.
        prompt = engine.tokenizer.encode(text, add_special_tokens=False)
        limit = body.token_limit() or engine.defaults.get("max_tokens")
        params = _params(body, limit, body.logprob_count(), engine.defaults)
        jobs = _jobs([prompt], params, body.n, body.seed)
        fmt = bodies.ChatFormat(with_logprobs=body.logprobs)
        return await self._generate(request, loaded, body, jobs, fmt)

    async def _generate(
        self,
        request: Request,
        loaded: ModelVersion,
        body: CompletionRequest | ChatCompletionRequest,
        jobs: list[Job],
        fmt: bodies.Format,
    ) -> Response:
        """Generate on the version taken once for this request: its engine computes every
        token, so its provenance is the answer's."""
        meta = bodies.Meta(f"{fmt.id_prefix}{uuid.uuid4().hex}", int(time.time()), body.model)
        headers = self._headers(loaded.provenance.header)
        if body.stream:
            return await self._stream(request, loaded.engine, body, jobs, fmt, meta, headers)
        streams = await sse.unless_disconnected(
            generation.start(loaded.engine, jobs), request.receive
        )
        if streams is None:
            return Response(status_code=499)
        choices = [bodies.Choice(job.index) for job in jobs]
        collected = await sse.unless_disconnected(_collect(streams, choices), request.receive)
        if collected is None:
            return Response(status_code=499)
        return _json(bodies.answer(fmt, meta, collected, body.n), headers=headers)

    async def _stream(
        self,
        request: Request,
        engine: Any,
        body: CompletionRequest | ChatCompletionRequest,
        jobs: list[Job],
        fmt: bodies.Format,
        meta: bodies.Meta,
        headers: dict[str, str],
    ) -> Response:
        """Server-sent events, holding one of the client's stream slots until they end."""
        release = self.dataplane.streams.acquire(request.client.host if request.client else None)
        try:
            streams = await sse.unless_disconnected(generation.start(engine, jobs), request.receive)
        except BaseException:
            release()
            raise
        if streams is None:
            release()
            return Response(status_code=499)
        choices = [bodies.Choice(job.index) for job in jobs]
        events = _events(fmt, meta, streams, choices, body.n, body.include_usage)
        return sse.EventStreamResponse(events, headers, on_close=release)

    # ---- embeddings ------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = parse(EmbeddingRequest, await self.read_body(request))
        texts = body.texts()
        result = await self.embedder.embed(body.model, texts)
        vectors = result.vectors
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise _dimensions_error(body.dimensions, vectors.shape[1])
        content = bodies.embedding_list(
            body.model, vectors, result.prompt_tokens, body.encoding_format
        )
        return _json(content, headers=self._headers(result.provenance))


def _dimensions_error(asked: int, has: int) -> AiaasError:
    return OpenAIError(f"this model gives {has} dimensions, not {asked}", param="dimensions")


def _params(
    body: CompletionRequest | ChatCompletionRequest,
    max_tokens: int | None,
    logprobs: int | None,
    defaults: dict[str, Any],
) -> SamplingParams:
    """The request's sampling; what it leaves out comes from the model's generation
    defaults (its folder's generation.json), then OpenAI's."""
    temperature = body.temperature if body.temperature is not None else defaults.get("temperature")
    top_p = body.top_p if body.top_p is not None else defaults.get("top_p")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        top_k=max(body.top_k, 0),
        stop=body.stop_strings(),
        logprobs=logprobs,
        ignore_eos=body.ignore_eos,
    )


def _jobs(
    prompts: list[str | list[int]], params: SamplingParams, n: int, seed: int | None
) -> list[Job]:
    """n choices per prompt; a seeded request's choice i samples with seed + i."""
    request_id = uuid.uuid4().hex
    jobs = []
    for number, prompt in enumerate(prompts):
        for choice in range(n):
            index = number * n + choice
            chosen = params if seed is None else replace(params, seed=seed + choice)
            jobs.append(Job(index, prompt, chosen, f"{request_id}-{index}"))
    return jobs


async def _collect(
    streams: list[generation.Stream], choices: list[bodies.Choice]
) -> list[bodies.Choice]:
    async with contextlib.aclosing(generation.merged(streams)) as deltas:
        async for position, delta in deltas:
            choices[position].add(delta)
    return choices


async def _events(
    fmt: bodies.Format,
    meta: bodies.Meta,
    streams: list[generation.Stream],
    choices: list[bodies.Choice],
    n: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """OpenAI's chunks: each choice's opening, its deltas (the finish reason on its last),
    the usage chunk when asked, then [DONE]; an error mid-stream is one more data event."""
    try:
        for choice in choices:
            opening = fmt.opening(choice.index)
            if opening is not None:
                yield sse.event(bodies.chunk(fmt, meta, [opening], include_usage))
        async with contextlib.aclosing(generation.merged(streams)) as deltas:
            async for position, delta in deltas:
                choice = choices[position]
                offset = len(choice.text)
                choice.add(delta)
                if delta.text or delta.logprobs or delta.finish_reason is not None:
                    part = fmt.delta(choice.index, delta, offset)
                    yield sse.event(bodies.chunk(fmt, meta, [part], include_usage))
        if include_usage:
            yield sse.event(bodies.usage_chunk(fmt, meta, choices, n))
    except AiaasError as error:
        yield sse.event(envelope(error))
    except Exception:
        log.exception("unexpected error while streaming %s", meta.id)
        yield sse.event(internal_envelope())
    yield sse.DONE
