"""The engine on the real SmolLM2-135M-Instruct, converted by `aiaas export llm`:
continuous batching, seeded sampling and stop strings on real text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from generation import collect, greedy, wait_until_idle

from aiaas.errors import InvalidArgument, TooManyRequests
from aiaas.serve.llm.engine import LLMEngine
from aiaas.serve.llm.model import load_language_model
from aiaas.serve.llm.types import SamplingParams
from aiaas.serve.runtimes.onnx import OnnxModel
from aiaas.serve.serving_config import RuntimeOptions

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


@pytest.fixture
def smollm2_engine(smollm2_version: Path) -> Callable[..., LLMEngine]:
    def make(**parameters: object) -> LLMEngine:
        runtime = OnnxModel(smollm2_version / "model.onnx", RuntimeOptions(1, 2, 1, 0))
        settings = {key: str(value) for key, value in parameters.items()}
        model = load_language_model(smollm2_version, runtime, settings)
        return LLMEngine(model, model_name="smollm2", model_version="1")

    return make


def _chat(engine: LLMEngine, messages: list[dict[str, str]]) -> str:
    return engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def test_a_short_question_asked_during_a_long_story_is_answered_first_and_both_as_alone(
    smollm2_engine: Callable[..., LLMEngine],
) -> None:
    async def scenario() -> None:
        engine = smollm2_engine()
        try:
            story, question = _chat(engine, STORY), _chat(engine, QUESTION)
            long_params = SamplingParams(temperature=0.0, max_tokens=64)
            short_params = SamplingParams(temperature=0.0, max_tokens=12)
            story_alone = await collect(engine, story, long_params)
            question_alone = await collect(engine, question, short_params)
            assert "Paris" in question_alone.text
            assert len(story_alone.token_ids) > 30, story_alone.text
            order: list[str] = []
            stream = engine.generate(story, long_params, "story")
            first = await anext(stream)

            async def rest_of_story() -> list[int]:
                ids = list(first.token_ids)
                async for delta in stream:
                    ids += delta.token_ids
                order.append("story")
                return ids

            story_task = asyncio.create_task(rest_of_story())
            answer = await collect(engine, question, short_params)
            order.append("question")
            assert order == ["question"], "the question waited for the story"
            assert answer.token_ids == question_alone.token_ids
            assert await story_task == story_alone.token_ids
            await wait_until_idle(engine)
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_seeded_sampling_and_stop_strings_on_real_text(
    smollm2_engine: Callable[..., LLMEngine],
) -> None:
    async def scenario() -> None:
        engine = smollm2_engine()
        try:
            prompt = _chat(engine, STORY)
            seeded = SamplingParams(temperature=0.8, top_p=0.9, seed=1234, max_tokens=24)
            alone = await collect(engine, prompt, seeded)
            together = await asyncio.gather(
                collect(engine, _chat(engine, QUESTION), greedy(30)),
                collect(engine, prompt, seeded),
                collect(engine, prompt, SamplingParams(temperature=1.0, max_tokens=16)),
            )
            assert together[1].token_ids == alone.token_ids
            # A stop string across a token boundary: the end of one delta and the next.
            pieces = [d.text for d in alone.deltas]
            at = next(i for i in range(3, len(pieces)) if len(pieces[i - 1]) >= 2 and pieces[i])
            stop = pieces[at - 1][-2:] + pieces[at][:2]
            stopped = await collect(engine, prompt, replace(seeded, stop=(stop,)))
            assert stopped.finish_reason == "stop"
            assert stopped.text == alone.text[: alone.text.index(stop)]
        finally:
            await engine.close()

    asyncio.run(scenario())


def test_bounds_on_the_real_model_context_queue_and_cancellation(
    smollm2_engine: Callable[..., LLMEngine],
) -> None:
    async def scenario() -> None:
        engine = smollm2_engine(max_num_seqs=1, max_num_waiting=1)
        try:
            prompt = _chat(engine, QUESTION)
            length = len(engine.tokenizer.encode(prompt))
            with pytest.raises(InvalidArgument) as refused:
                await anext(engine.generate(prompt, greedy(2048), "too long"))
            assert str(refused.value).startswith(
                "This model's maximum context length is 2048 tokens. However, you requested "
                f"{length + 2048} tokens ({length} in the messages, 2048 in the completion)."
            )
            running = engine.generate(_chat(engine, STORY), greedy(1000), "running")
            await anext(running)
            waiting = asyncio.create_task(collect(engine, prompt, greedy(3)))
            while engine.num_waiting == 0:
                await asyncio.sleep(0.005)
            with pytest.raises(TooManyRequests):
                await anext(engine.generate(prompt, greedy(3), "refused"))
            await running.aclose()
            assert len((await waiting).token_ids) == 3
            await wait_until_idle(engine)
            assert engine.kv_cache_usage == 0.0
            assert engine.metrics.request_success["abort"] == 1
        finally:
            await engine.close()

    asyncio.run(scenario())
