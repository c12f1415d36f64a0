"""The records the engine's callers exchange with it: what to sample, and what one step
gave one sequence. A leaf module: it imports nothing of ours, so front ends can use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """One request's sampling choices, OpenAI's meanings and defaults."""

    max_tokens: int | None = None  # None: up to the context length
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None  # same seed -> same text, alone or inside any batch
    stop: tuple[str, ...] = ()  # stop strings, may span tokens; never emitted in part
    logprobs: int | None = None  # None = off; k >= 0 = the chosen token's logprob + top k
    ignore_eos: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    """A sampled token with its log-probability under the raw logits, and the top k."""

    token: str
    token_id: int
    logprob: float
    top: list[tuple[str, int, float]]  # (text, id, logprob), most likely first


@dataclass(frozen=True)
class GenerationDelta:
    """What one step yields for one sequence."""

    text: str  # new text, safe to emit (held back while it may be a stop string's prefix)
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finish_reason: str | None  # None while running; "stop" (eos or stop string) | "length"
    prompt_tokens: int
    completion_tokens: int  # so far
