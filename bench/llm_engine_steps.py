"""Decode throughput of the generation engine alone (no HTTP): aggregate generated
tokens/s with 1, 8 and 32 greedy requests at once, each `--max-tokens` long.

    python bench/llm_engine_steps.py REPO/NAME/VERSION [--max-tokens 64] [--threads 2]
        [--spinning never|run|always]   (run: the server's default)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np

from aiaas.serve.llm.engine import LLMEngine
from aiaas.serve.llm.model import load_language_model
from aiaas.serve.llm.types import SamplingParams
from aiaas.serve.runtimes.onnx import OnnxModel
from aiaas.serve.serving_config import SPINNING_CHOICES, RuntimeOptions

PROMPT_LENGTHS = (12, 40, 25, 80, 18, 60, 30, 50)


async def run(engine: LLMEngine, concurrency: int, max_tokens: int) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    vocab = min(engine.tokenizer.vocab_size, 1000)
    prompts = [
        rng.integers(10, vocab, PROMPT_LENGTHS[i % len(PROMPT_LENGTHS)]).tolist()
        for i in range(concurrency)
    ]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)

    async def one(prompt: list[int]) -> int:
        return sum([len(d.token_ids) async for d in engine.generate(prompt, params, "bench")])

    start, cpu = time.perf_counter(), time.process_time()
    tokens = sum(await asyncio.gather(*(one(p) for p in prompts)))
    return time.perf_counter() - start, time.process_time() - cpu, tokens


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spinning", choices=SPINNING_CHOICES, default=SPINNING_CHOICES[0])
    args = parser.parse_args()
    runtime = OnnxModel(
        args.model_dir / "model.onnx", RuntimeOptions(1, args.threads, 1, 0, args.spinning)
    )
    engine = LLMEngine(
        load_language_model(args.model_dir, runtime, {}), model_name="bench", model_version="1"
    )
    print(f"KV cache: {engine.kv_bytes_per_token} bytes per token")
    # On a shared machine wall time says little: CPU seconds tell what the work costs,
    # and tokens per CPU-second times the thread count estimates dedicated cores.
    print("concurrency  tokens  seconds  tokens/s  cpu-s  tokens/s if the cores were ours")
    for concurrency in (1, 8, 32):
        seconds, cpu, tokens = await run(engine, concurrency, args.max_tokens)
        dedicated = tokens / max(cpu / args.threads, seconds / 10**6)
        print(
            f"{concurrency:>11}  {tokens:>6}  {seconds:>7.2f}  {tokens / seconds:>8.1f}"
            f"  {cpu:>5.1f}  {dedicated:>8.1f}"
        )
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
