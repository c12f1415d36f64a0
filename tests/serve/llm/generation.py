"""Helpers shared by the engine tests: run generations and gather what they yield."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiaas.serve.llm.engine import LLMEngine
from aiaas.serve.llm.types import GenerationDelta, SamplingParams


@dataclass
class Result:
    text: str
    token_ids: list[int]
    finish_reason: str | None
    deltas: list[GenerationDelta]


async def collect(engine: LLMEngine, prompt: str | list[int], params: SamplingParams) -> Result:
    deltas = [delta async for delta in engine.generate(prompt, params, "test")]
    return Result(
        "".join(d.text for d in deltas),
        [t for d in deltas for t in d.token_ids],
        deltas[-1].finish_reason,
        deltas,
    )


async def wait_until_idle(engine: LLMEngine, timeout_s: float = 30) -> None:
    """Until the engine holds no running or waiting sequence (a bound, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while engine.num_running or engine.num_waiting:
        assert loop.time() < deadline, "the engine did not free its sequences"
        await asyncio.sleep(0.01)


def greedy(max_tokens: int, **extra: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **extra)  # type: ignore[arg-type]
