"""The engine over a tiny random Llama: continuous batching, sampling, stop strings,
cancellation and bounds, through the real ONNX Runtime session."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from generation import collect, greedy, wait_until_idle
from tiny_llama import EngineFactory

from aiaas.errors import InvalidArgument, TooManyRequests
from aiaas.serve.llm.sampler import log_softmax
from aiaas.serve.llm.types import SamplingParams

PROMPTS = [
    "The capital of France is",
    "Once upon a time there was a little robot",
    "def add(a, b):",
    "one two three",
]


def test_greedy_text_is_the_same_alone_and_inside_a_batch(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            params = greedy(24)
            # Two prompts of one length: they prefill together in one run.
            prompts: list[str | list[int]] = [*PROMPTS, list(range(10, 30)), list(range(40, 60))]
            alone = [await collect(engine, prompt, params) for prompt in prompts]
            together = await asyncio.gather(*(collect(engine, p, params) for p in prompts))
            for solo, batched in zip(alone, together, strict=True):
                assert batched.token_ids == solo.token_ids
                assert batched.text == solo.text
                assert len(solo.token_ids) == 24
                assert solo.finish_reason == "length"
            assert len({tuple(r.token_ids) for r in alone}) > 1, "prompts must matter"
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_short_request_joining_a_running_one_finishes_first(make_engine: EngineFactory) -> None:
    """Iteration-level batching: the short request is admitted at the next step, not after
    the long one; both texts equal their solo greedy outputs."""

    async def scenario() -> None:
        engine = make_engine()
        try:
            long_params, short_params = greedy(2000), greedy(6)
            long_solo = await collect(engine, PROMPTS[0], long_params)
            short_solo = await collect(engine, PROMPTS[1], short_params)
            finished: list[str] = []
            long_iter = engine.generate(PROMPTS[0], long_params, "long")
            first = await anext(long_iter)

            async def run_long() -> list[int]:
                ids = list(first.token_ids)
                async for delta in long_iter:
                    ids += delta.token_ids
                finished.append("long")
                return ids

            long_task = asyncio.create_task(run_long())
            short = await collect(engine, PROMPTS[1], short_params)
            finished.append("short")
            long_ids = await long_task
            assert finished == ["short", "long"]
            assert short.token_ids == short_solo.token_ids
            assert long_ids == long_solo.token_ids
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_seeded_request_gives_the_same_text_alone_and_in_a_batch(
    make_engine: EngineFactory,
) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            seeded = SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=7, max_tokens=30)
            alone = await collect(engine, PROMPTS[0], seeded)
            others = [
                SamplingParams(temperature=1.0, max_tokens=40),
                SamplingParams(temperature=0.7, seed=3, max_tokens=20),
                greedy(25),
            ]
            together = await asyncio.gather(
                collect(engine, PROMPTS[1], others[0]),
                collect(engine, PROMPTS[0], seeded),
                collect(engine, PROMPTS[2], others[1]),
                collect(engine, PROMPTS[3], others[2]),
            )
            assert together[1].token_ids == alone.token_ids
            other_seed = await collect(engine, PROMPTS[0], SamplingParams(seed=8, max_tokens=30))
            assert other_seed.token_ids != alone.token_ids
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_stop_string_across_tokens_ends_the_text_and_is_never_streamed(
    make_engine: EngineFactory,
) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            full = await collect(engine, PROMPTS[0], greedy(40))
            pieces = [d.text for d in full.deltas]
            stop, start = _stop_across_a_token_boundary(pieces)
            stopped = await collect(engine, PROMPTS[0], greedy(40, stop=("zzzz", stop)))
            assert stopped.finish_reason == "stop"
            # Everything streamed, joined, is the text before the stop: not one character
            # of the stop string went out, though its first part came a token earlier.
            assert stopped.text == full.text[:start]
            assert len(stopped.token_ids) < 40
        finally:
            await engine.close()

    asyncio.run(scenario())


def _stop_across_a_token_boundary(pieces: list[str]) -> tuple[str, int]:
    """A stop string: the end of one delta's text and the start of the next, first seen
    there; and where it starts in the whole text."""
    text = "".join(pieces)
    offset = 0
    for before, after in itertools.pairwise(pieces):
        offset += len(before)
        if len(before) >= 2 and after:
            stop = before[-2:] + after[:1]
            if text.index(stop) == offset - 2:
                return stop, offset - 2
    raise AssertionError(f"no usable token boundary in {pieces!r}")


def test_cancelling_a_generation_frees_its_slot(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            stream = engine.generate(PROMPTS[0], greedy(3000), "gone")
            await anext(stream)
            await anext(stream)
            assert engine.num_running == 1
            await stream.aclose()
            await wait_until_idle(engine)
            assert engine.kv_cache_usage == 0.0
            assert engine.metrics.request_success["abort"] == 1
            after = await collect(engine, PROMPTS[1], greedy(3))
            assert after.finish_reason == "length"
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_a_full_waiting_queue_refuses_at_once(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine(max_num_seqs=1, max_num_waiting=1)
        try:
            running = engine.generate(PROMPTS[0], greedy(3000), "a")
            await anext(running)
            waiting = asyncio.create_task(collect(engine, PROMPTS[1], greedy(3)))
            while engine.num_waiting == 0:
                await asyncio.sleep(0.005)
            with pytest.raises(TooManyRequests) as refused:
                await anext(engine.generate(PROMPTS[2], greedy(3), "c"))
            assert refused.value.http_status == 429
            await running.aclose()
            assert (await waiting).finish_reason == "length"
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_prompt_plus_max_tokens_over_the_context_is_refused(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            prompt = engine.tokenizer.encode(PROMPTS[0])
            too_many = engine.context_length - len(prompt) + 1
            with pytest.raises(InvalidArgument) as refused:
                await anext(engine.generate(prompt, greedy(too_many), "x"))
            assert str(refused.value).startswith(
                f"This model's maximum context length is {engine.context_length} tokens. "
                f"However, you requested {engine.context_length + 1} tokens "
                f"({len(prompt)} in the messages, {too_many} in the completion)."
            )
            with pytest.raises(InvalidArgument):
                await anext(engine.generate([0] * (engine.context_length + 1), greedy(1), "y"))
            assert engine.num_running == 0
            assert engine.num_waiting == 0
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_logprobs_are_the_log_softmax_of_the_raw_logits(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            prompt = engine.tokenizer.encode(PROMPTS[2])
            sampled = SamplingParams(temperature=1.5, seed=1, max_tokens=1, logprobs=3)
            result = await collect(engine, prompt, sampled)
            session = engine._session  # the same file, run directly for the reference
            feed = _prefill_feed(prompt, engine)
            logits = session.run(["logits"], feed)[0][0, -1]
            expected = log_softmax(logits)
            [entry] = result.deltas[0].logprobs or []
            assert entry.token_id == result.token_ids[0]
            assert entry.logprob == pytest.approx(expected[entry.token_id], abs=1e-4)
            assert [t[1] for t in entry.top] == list(np.argsort(-expected)[:3])
            assert entry.top[0][2] == pytest.approx(expected.max(), abs=1e-4)
        finally:
            await engine.close()

    asyncio.run(scenario())


def _prefill_feed(prompt: list[int], engine: object) -> dict[str, np.ndarray]:
    from tiny_llama import HEAD_DIM, KV_HEADS, LAYERS

    feed = {
        "input_ids": np.asarray([prompt], dtype=np.int64),
        "attention_mask": np.ones((1, len(prompt)), dtype=np.int64),
        "position_ids": np.arange(len(prompt), dtype=np.int64)[None],
    }
    for layer in range(LAYERS):
        for kind in ("key", "value"):
            feed[f"past_key_values.{layer}.{kind}"] = np.zeros(
                (1, KV_HEADS, 0, HEAD_DIM), dtype=np.float32
            )
    return feed


def test_an_engine_being_closed_refuses_new_requests_and_lets_running_ones_finish(
    make_engine: EngineFactory,
) -> None:
    async def scenario() -> None:
        engine = make_engine()
        stream = engine.generate(PROMPTS[0], greedy(50), "a")
        first = await anext(stream)
        closing = asyncio.create_task(engine.close())
        await asyncio.sleep(0)
        rest = [delta async for delta in stream]
        await closing
        assert len(first.token_ids) + sum(len(d.token_ids) for d in rest) == 50
        assert rest[-1].finish_reason == "length"
        with pytest.raises(Exception, match="unloading"):
            await anext(engine.generate(PROMPTS[1], greedy(3), "b"))

    asyncio.run(scenario())


def test_a_prompt_prefilled_in_chunks_generates_what_one_run_generates(
    make_engine: EngineFactory,
) -> None:
    async def scenario() -> None:
        whole, chunked = make_engine(), make_engine(prefill_chunk_tokens=5)
        try:
            prompt = " ".join(PROMPTS)
            assert len(whole.tokenizer.encode(prompt)) > 15
            expected = await collect(whole, prompt, greedy(20))
            assert (await collect(chunked, prompt, greedy(20))).token_ids == expected.token_ids
        finally:
            await whole.close()
            await chunked.close()

    asyncio.run(scenario())


def test_metrics_count_tokens_latencies_and_finish_reasons(make_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = make_engine()
        try:
            prompts = [engine.tokenizer.encode(p) for p in PROMPTS[:2]]
            await asyncio.gather(*(collect(engine, p, greedy(5)) for p in prompts))
            metrics = engine.metrics
            assert metrics.prompt_tokens == sum(len(p) for p in prompts)
            assert metrics.generation_tokens == 10
            assert sum(metrics.time_to_first_token.counts) == 2
            assert sum(metrics.inter_token_latency.counts) == 8
            assert sum(metrics.e2e_request_latency.counts) == 2
            assert metrics.request_success == {"stop": 0, "length": 2, "abort": 0}
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_at_most_max_num_seqs_run_and_the_next_one_starts_when_a_slot_frees(
    make_engine: EngineFactory,
) -> None:
    async def scenario() -> None:
        engine = make_engine(max_num_seqs=2)
        try:
            first = engine.generate(PROMPTS[0], greedy(3000), "a")
            second = engine.generate(PROMPTS[1], greedy(3000), "b")
            await anext(first)
            await anext(second)
            third = asyncio.create_task(collect(engine, PROMPTS[2], greedy(4)))
            while engine.num_waiting == 0:
                await asyncio.sleep(0.005)
            assert engine.num_running == 2
            assert not third.done()
            await first.aclose()
            assert (await third).finish_reason == "length"
            assert engine.num_running == 1
            await second.aclose()
        finally:
            await engine.close()

    asyncio.run(scenario())
