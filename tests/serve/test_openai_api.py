"""The OpenAI API and Triton's generate extension, end to end: one real server (poll
mode, an API key) serving the converted SmolLM2 and the exported MiniLM, driven by the
official `openai` client (unchanged, max_retries=0) and by httpx for the raw wire.

Greedy answers are compared token for token with an independent reference: the plain
ONNX Runtime greedy loop that tests/export checks against transformers' Llama loaded
from the same GGUF file, fed transformers' prompt tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai
import orjson
import pytest
from compression_fixtures import minilm_repository
from llm_fixtures import greedy_onnx, onnx_session, smollm2_version
from tokenizers import Tokenizer

__all__ = ["minilm_repository", "smollm2_version"]

MODEL = "smollm2"
KEY = "test-key-123"
PROMPT = "The capital of France is"
QUESTION = "What is the capital of France?"
TOKENS = 12
#: transformers' tokens for PROMPT and its rendering of SmolLM2's chat template for QUESTION
COMPLETION_IDS = [504, 3575, 282, 4649, 314]
CHAT_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
ENGINE_PARAMETERS = """
parameters { key: "max_num_seqs" value { string_value: "4" } }
parameters { key: "max_num_waiting" value { string_value: "8" } }
"""
#: The same model under another name, whose unload ends its generations at once.
SHORT_LIVED = "smollm2-short-drain"
SHORT_DRAIN = 'parameters { key: "drain_timeout_s" value { string_value: "0.1" } }\n'


@pytest.fixture(scope="module")
def repository(module_tmp: Path, smollm2_version: Path, minilm_repository: Path) -> Path:
    """SmolLM2 (version 1, bounded to 4 running and 8 waiting), a short-lived copy of it
    and MiniLM side by side."""
    root = module_tmp / "repository"
    config = (smollm2_version.parent / "config.pbtxt").read_text()
    for name, extra in ((MODEL, ENGINE_PARAMETERS), (SHORT_LIVED, SHORT_DRAIN)):
        (root / name).mkdir(parents=True)
        named = config.replace(f'name: "{MODEL}"', f'name: "{name}"')
        (root / name / "config.pbtxt").write_text(named + extra)
        (root / name / "1").symlink_to(smollm2_version, target_is_directory=True)
    shutil.copytree(minilm_repository / "minilm", root / "minilm")
    return root


@pytest.fixture(scope="module")
def server(module_server, repository: Path):
    return module_server(
        repository,
        "--model-control-mode", "poll",
        "--repository-poll-secs", "0.5",
        "--api-key", KEY,
    )  # fmt: skip


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


def _async_client(server) -> openai.AsyncOpenAI:
    """A client per asyncio.run: its connection pool belongs to one event loop."""
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as session:
        yield session


@dataclass(frozen=True)
class Reference:
    """Greedy continuations: the decoded text after each new token, and prompt lengths."""

    pieces: dict[str, list[str]]
    prompt_tokens: dict[str, int]

    def text(self, name: str) -> str:
        return self.pieces[name][-1]


@pytest.fixture(scope="module")
def reference(smollm2_version: Path) -> Reference:
    """Greedy tokens from the plain ONNX Runtime loop that tests/export checks against
    transformers' Llama from the same GGUF, on transformers' prompt tokens: nothing of
    the server's tokenizer, template, engine or sampler."""
    tokenizer = Tokenizer.from_file(str(smollm2_version / "tokenizer.json"))
    eos = tuple(json.loads((smollm2_version / "generation.json").read_text())["eos_token_ids"])
    session = onnx_session(smollm2_version / "model.onnx")
    prompts = {
        "completion": COMPLETION_IDS,
        "chat": tokenizer.encode(CHAT_PROMPT, add_special_tokens=False).ids,
    }
    pieces, lengths = {}, {}
    for name, ids in prompts.items():
        new = greedy_onnx(session, [ids], TOKENS, eos)[0]
        pieces[name] = [
            tokenizer.decode(new[: i + 1], skip_special_tokens=True) for i in range(len(new))
        ]
        lengths[name] = len(ids)
    return Reference(pieces, lengths)


def _sse(response: httpx.Response) -> list[bytes]:
    """The data payloads of a raw event stream, checking OpenAI's framing on the way."""
    body = response.read()
    events = body.split(b"\n\n")
    assert events[-1] == b""
    payloads = []
    for block in events[:-1]:
        assert block.startswith(b"data: "), block
        payloads.append(block[len(b"data: ") :])
    return payloads


def _metric(http: httpx.Client, name: str) -> float:
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and f'model="{MODEL}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# ---- models, greedy answers ------------------------------------------------------------


def test_models_lists_the_language_and_the_embedding_model(client):
    names = [model.id for model in client.models.list()]
    assert names == ["minilm", MODEL, SHORT_LIVED]
    assert client.models.retrieve(MODEL).owned_by == "aiaas"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_greedy_completion_equals_the_reference_token_for_token(client, reference):
    answer = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=TOKENS, temperature=0, logprobs=0
    )
    choice = answer.choices[0]
    expected = reference.pieces["completion"]
    assert choice.text == reference.text("completion")
    assert len(choice.logprobs.tokens) == len(expected)
    assert "".join(choice.logprobs.tokens) == reference.text("completion")
    assert answer.usage.completion_tokens == len(expected)
    assert answer.usage.prompt_tokens == reference.prompt_tokens["completion"]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + len(expected)
    assert choice.finish_reason == ("length" if len(expected) == TOKENS else "stop")


def test_greedy_chat_equals_the_reference_token_for_token(client, reference):
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_completion_tokens=TOKENS,
        temperature=0,
    )
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == reference.text("chat")
    assert answer.usage.completion_tokens == len(reference.pieces["chat"])
    assert answer.usage.prompt_tokens == reference.prompt_tokens["chat"]


# ---- streaming -------------------------------------------------------------------------


def test_streamed_chat_equals_the_answer_with_role_first_and_usage_last(client, http):
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": TOKENS,
        "temperature": 0,
    }
    whole = client.chat.completions.create(**request)
    chunks = list(
        client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in content) == (
        whole.choices[0].message.content
    )
    reasons = [c.choices[0].finish_reason for c in content]
    assert reasons[-1] == whole.choices[0].finish_reason
    assert all(reason is None for reason in reasons[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    with http.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as raw:
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("text/event-stream")
        payloads = _sse(raw)
    assert payloads[-1] == b"[DONE]"
    bodies = [orjson.loads(p) for p in payloads[:-1]]
    assert all(b["object"] == "chat.completion.chunk" and "usage" not in b for b in bodies)


def test_streamed_completion_equals_the_answer(client, reference):
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=TOKENS, temperature=0, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == reference.text("completion")
    assert chunks[-1].choices[0].finish_reason is not None


def test_stop_string_across_a_token_boundary_is_never_emitted(client, reference):
    pieces, full = reference.pieces["completion"], reference.text("completion")
    tokens = [b[len(a) :] for a, b in zip(["", *pieces], pieces, strict=False)]
    boundary = next(i for i in range(1, len(tokens)) if len(tokens[i - 1].strip()) >= 2)
    left = len(pieces[boundary - 1])
    stop = pieces[boundary][left - 2 : left + 1]  # 2 characters of one token, 1 of the next
    expected = full[: full.index(stop)]
    request = {"model": MODEL, "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0}
    answer = client.completions.create(**request, stop=[stop, "never-said"])
    assert answer.choices[0].text == expected
    assert answer.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].text for c in client.completions.create(**request, stop=stop, stream=True)
    )
    assert streamed == expected


# ---- sampling: seed, n, logprobs -------------------------------------------------------


def test_a_seed_gives_the_same_text_alone_and_under_concurrent_load(server):
    seeded = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 16, "seed": 1234}

    async def run() -> tuple[str, str, list[str]]:
        async with _async_client(server) as api:
            alone = (await api.completions.create(**seeded)).choices[0].text
            again = (await api.completions.create(**seeded)).choices[0].text
            others = [
                api.completions.create(model=MODEL, prompt=p, max_tokens=16)
                for p in ("My favourite food is", "In the year 2050", "Dogs and cats")
            ]
            results = await asyncio.gather(api.completions.create(**seeded), *others)
        return alone, again, [r.choices[0].text for r in results]

    alone, again, loaded = asyncio.run(run())
    assert alone == again == loaded[0]


def test_n_2_gives_two_choices_seeded_as_two_requests(client):
    request = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a joke."}]}
    both = client.chat.completions.create(**request, n=2, seed=7, max_tokens=10)
    first = client.chat.completions.create(**request, seed=7, max_tokens=10)
    second = client.chat.completions.create(**request, seed=8, max_tokens=10)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[0].message.content == first.choices[0].message.content
    assert both.choices[1].message.content == second.choices[0].message.content
    assert both.usage.completion_tokens == (
        first.usage.completion_tokens + second.usage.completion_tokens
    )
    assert both.usage.prompt_tokens == first.usage.prompt_tokens


def test_logprobs_name_the_chosen_tokens_and_their_top_alternatives(client):
    answer = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    items = answer.choices[0].logprobs.content
    assert "".join(item.token for item in items) == answer.choices[0].message.content
    for item in items:
        assert len(item.top_logprobs) == 3
        assert item.logprob <= 0
        # greedy: the chosen token is the most likely one
        assert item.top_logprobs[0].token == item.token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-5)
        assert bytes(item.bytes).decode() == item.token


# ---- embeddings ------------------------------------------------------------------------


def test_embeddings_equal_the_v2_path_output_of_minilm(client, http):
    from transformers import AutoTokenizer

    from aiaas.export.minilm import model_dir, tokenize

    sentences = ["The cat slept on the warm windowsill.", "How do I reset my password?"]
    arrays = tokenize(AutoTokenizer.from_pretrained(str(model_dir())), sentences)
    inputs = [
        {"name": k, "datatype": "INT64", "shape": list(v.shape), "data": v.ravel().tolist()}
        for k, v in arrays.items()
    ]
    v2 = http.post("/v2/models/minilm/infer", json={"inputs": inputs}).json()
    expected = np.asarray(v2["outputs"][0]["data"], dtype=np.float32).reshape(2, -1)
    answer = client.embeddings.create(model="minilm", input=sentences)  # base64 on the wire
    got = np.asarray([item.embedding for item in answer.data], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert answer.usage.prompt_tokens == int(arrays["attention_mask"].sum())
    single = http.post("/v1/embeddings", json={"model": "minilm", "input": sentences[1]}).json()
    np.testing.assert_allclose(single["data"][0]["embedding"], expected[1], atol=1e-5)
    raw = http.post(
        "/v1/embeddings", json={"model": "minilm", "input": sentences, "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][1]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[1], atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="not an embedding model")


# ---- errors ----------------------------------------------------------------------------


def test_unknown_model_bad_parameters_and_context_overflow_in_openai_shape(client, http):
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    assert bad.value.param == "temperature"
    assert bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=0)
    assert bad.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as overflow:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=1_000_000)
    assert "maximum context length" in overflow.value.message
    error = http.post("/v1/completions", content=b"{not json").json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    unknown = http.post("/v1/no/such/route", json={})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Invalid URL (POST /v1/no/such/route)"


def test_api_key_is_required_on_v1_only(server, http):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    missing = httpx.get(f"{server.url}/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v2/models/{MODEL}/ready").status_code == 200


# ---- Triton's generate extension -------------------------------------------------------


def test_generate_and_generate_stream_give_the_reference_text(server, reference):
    body = {"text_input": PROMPT, "parameters": {"max_tokens": TOKENS, "temperature": 0}}
    answer = httpx.post(f"{server.url}/v2/models/{MODEL}/generate", json=body, timeout=60)
    assert answer.status_code == 200
    assert answer.json()["text_output"] == reference.text("completion")
    assert answer.json()["model_name"] == MODEL
    url = f"{server.url}/v2/models/{MODEL}/versions/1/generate_stream"
    with httpx.stream("POST", url, json=body, timeout=60) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [orjson.loads(p) for p in _sse(raw)]
    assert "".join(e["text_output"] for e in events) == reference.text("completion")
    missing = httpx.post(f"{server.url}/v2/models/nope/generate", json=body)
    assert missing.status_code == 404
    assert "error" in missing.json()
    bad = httpx.post(f"{server.url}/v2/models/{MODEL}/generate", json={"parameters": {}})
    assert bad.status_code == 400


# ---- the engine through the API: batching, backpressure, cancellation, swaps -----------


def test_a_short_request_arriving_during_a_long_one_finishes_first(server, client, http):
    long_request = {
        "model": MODEL,
        "prompt": "Write a long story:",
        "temperature": 0,
        "max_tokens": 48,
        "extra_body": {"ignore_eos": True},
    }
    short_request = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0}
    long_solo = client.completions.create(**long_request).choices[0].text
    short_solo = client.completions.create(**short_request).choices[0].text

    async def run() -> tuple[str, float, str]:
        async with _async_client(server) as api:
            stream = await api.completions.create(**long_request, stream=True)
            chunks = stream.__aiter__()
            pieces = [(await anext(chunks)).choices[0].text]  # the long one is generating
            short = await api.completions.create(**short_request)
            # 4 tokens joined the batch and left it; the long one, 44 from its end, runs on
            running = _metric(http, "aiaas_num_requests_running")
            pieces += [chunk.choices[0].text async for chunk in chunks]
        return short.choices[0].text, running, "".join(pieces)

    short_text, running_after_short, long_text = asyncio.run(run())
    assert running_after_short == 1
    assert short_text == short_solo
    assert long_text == long_solo


def test_a_full_queue_answers_429_and_disconnects_free_every_slot(server, http):
    body = {
        "model": MODEL,
        "prompt": "Count to a thousand:",
        "max_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {KEY}"}

    async def run() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http2:

            async def hold() -> None:
                async with http2.stream("POST", "/v1/completions", json=body) as response:
                    async for _ in response.aiter_bytes():
                        pass

            async def until(running: int, waiting: int) -> None:
                deadline = time.monotonic() + 60
                while (
                    _metric(http, "aiaas_num_requests_running"),
                    _metric(http, "aiaas_num_requests_waiting"),
                ) != (running, waiting):
                    assert time.monotonic() < deadline, (
                        f"never {running} running, {waiting} waiting"
                    )
                    await asyncio.sleep(0.05)

            # the batch first (a burst would meet the waiting bound before admission)
            holders = [asyncio.create_task(hold()) for _ in range(4)]
            await until(4, 0)
            holders += [asyncio.create_task(hold()) for _ in range(8)]
            await until(4, 8)
            async with _async_client(server) as api:
                with pytest.raises(openai.RateLimitError) as refused:
                    await api.completions.create(model=MODEL, prompt="one more", max_tokens=2)
            assert refused.value.code == "rate_limit_exceeded"
            for task in holders:
                task.cancel()
            await asyncio.gather(*holders, return_exceptions=True)

    asyncio.run(run())
    _wait_for(
        lambda: (
            _metric(http, "aiaas_num_requests_running") == 0
            and _metric(http, "aiaas_num_requests_waiting") == 0
        ),
        "the running and waiting gauges to return to 0 after the disconnects",
    )


def test_an_error_mid_stream_is_a_data_event_before_done(http, repository, module_tmp):
    body = {
        "model": SHORT_LIVED,
        "prompt": "Count to a thousand:",
        "max_tokens": 1000,
        "ignore_eos": True,
        "stream": True,
    }
    with http.stream("POST", "/v1/completions", json=body) as raw:
        events = (line for line in raw.iter_lines() if line)
        assert orjson.loads(next(events)[len("data: ") :])["choices"]  # generating
        # poll mode unloads a removed model; its engine ends what still runs
        (repository / SHORT_LIVED).rename(module_tmp / "removed")
        rest = list(events)
    assert rest[-1] == "data: [DONE]"
    error = orjson.loads(rest[-2][len("data: ") :])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "unloaded" in error["message"]
    assert all(orjson.loads(line[len("data: ") :])["choices"] for line in rest[:-2])


def test_a_new_version_during_a_generation_loses_no_request(server, client, repository):
    request = {"model": MODEL, "prompt": "Write a long story:", "temperature": 0}
    solo = client.completions.create(**request, max_tokens=32, extra_body={"ignore_eos": True})
    stream = client.completions.create(
        **request, max_tokens=32, stream=True, extra_body={"ignore_eos": True}
    )
    iterator = iter(stream)
    pieces = [next(iterator).choices[0].text]
    version_one = (repository / MODEL / "1").resolve()
    (repository / MODEL / "2").symlink_to(version_one, target_is_directory=True)
    url = f"{server.url}/v2/models/{MODEL}"
    _wait_for(lambda: httpx.get(url).json().get("versions") == ["2"], "version 2 to serve")
    pieces += [chunk.choices[0].text for chunk in iterator]
    assert "".join(pieces) == solo.choices[0].text
    generated = httpx.post(
        f"{url}/generate", json={"text_input": PROMPT, "parameters": {"max_tokens": 2}}
    )
    assert generated.json()["model_version"] == "2"
