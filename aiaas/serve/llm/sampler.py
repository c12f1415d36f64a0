"""Choosing the next token for every running sequence from one step's logits.

Each row is sampled with its own parameters and its own numpy Generator, from its
own row of logits only: what else is in the batch never changes a sequence's draw,
so a seeded request gives the same text alone or inside any batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aiaas.serve.llm.types import SamplingParams

#: Candidates kept before sorting for top-p: a full sort of a 50k vocabulary per row
#: per step is the slow part; the nucleus almost always lies inside the top few hundred.
_TOP_P_CANDIDATES = 512


@dataclass(frozen=True, slots=True)
class Choice:
    """One row's sampled token, and its logprob and top-k when asked (else empty)."""

    token_id: int
    logprob: float | None
    top: list[tuple[int, float]]


def log_softmax(row: np.ndarray) -> np.ndarray:
    shifted = row.astype(np.float64) - float(row.max())
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return result


def sample(
    logits: np.ndarray, params: Sequence[SamplingParams], generators: Sequence[np.random.Generator]
) -> list[Choice]:
    """One token per row of ``logits`` [batch, vocab]."""
    return [
        _sample_row(logits[row], params[row], generators[row]) for row in range(logits.shape[0])
    ]


def _sample_row(row: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> Choice:
    token = int(np.argmax(row)) if params.temperature <= 0.0 else _draw(row, params, rng)
    if params.logprobs is None:
        return Choice(token, None, [])
    # OpenAI reports logprobs of the raw distribution, before temperature and truncation.
    logprobs = log_softmax(row)
    top: list[tuple[int, float]] = []
    if params.logprobs > 0:
        k = min(params.logprobs, row.shape[0])
        best = np.argpartition(-logprobs, k - 1)[:k]
        best = best[np.argsort(-logprobs[best], kind="stable")]
        top = [(int(i), float(logprobs[i])) for i in best]
    return Choice(token, float(logprobs[token]), top)


def _draw(row: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Temperature, then top-k, then top-p over what top-k kept, then one inverse-CDF draw."""
    scaled = row.astype(np.float64) / params.temperature
    vocab = scaled.shape[0]
    k = params.top_k if 0 < params.top_k < vocab else vocab
    if params.top_p < 1.0:
        candidates = _nucleus(scaled, k, params.top_p)
    else:
        candidates = _most_likely(scaled, k)
    values = scaled[candidates]
    weights = np.exp(values - values[0])
    cumulative = np.cumsum(weights)
    pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return int(candidates[min(pick, candidates.shape[0] - 1)])


def _most_likely(scaled: np.ndarray, k: int) -> np.ndarray:
    """The k largest entries' ids, most likely first, ties by id: a function of the row alone."""
    vocab = scaled.shape[0]
    ids = np.argpartition(-scaled, k - 1)[:k] if k < vocab else np.arange(vocab)
    return ids[np.lexsort((ids, -scaled[ids]))]


def _nucleus(scaled: np.ndarray, k: int, top_p: float) -> np.ndarray:
    """The smallest most-likely prefix of the top k holding ``top_p`` of their mass."""
    top = float(scaled.max())
    if k < scaled.shape[0]:
        kept = np.argpartition(-scaled, k - 1)[:k]
        total = float(np.exp(scaled[kept] - top).sum())
    else:
        total = float(np.exp(scaled - top).sum())
    candidates = _most_likely(scaled, min(k, _TOP_P_CANDIDATES))
    cumulative = np.cumsum(np.exp(scaled[candidates] - top) / total)
    if cumulative[-1] < top_p and candidates.shape[0] < k:
        # The nucleus is wider than the candidates: sort all of the top k.
        candidates = _most_likely(scaled, k)
        cumulative = np.cumsum(np.exp(scaled[candidates] - top) / total)
    count = int(np.searchsorted(cumulative, top_p, side="left")) + 1
    return candidates[: min(count, candidates.shape[0])]
