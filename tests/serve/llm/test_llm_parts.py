"""The engine's pure parts: stop-string hold-back, the sampler, the padded KV cache,
and the serving path's imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aiaas.serve.llm.kv_cache import BatchCache, as_value
from aiaas.serve.llm.sampler import sample
from aiaas.serve.llm.sequence import TextStream
from aiaas.serve.llm.types import SamplingParams

ROOT = Path(__file__).resolve().parents[3]
ALPHABET = "abc"


def _stream(stop: tuple[str, ...]) -> TextStream:
    """One character per token id: 0 -> 'a', 1 -> 'b', 2 -> 'c'."""
    return TextStream(lambda ids: "".join(ALPHABET[i] for i in ids), stop)


@given(
    text=st.text(alphabet=ALPHABET, min_size=1, max_size=30),
    stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), max_size=3),
)
def test_streamed_text_is_the_text_before_the_first_stop_and_never_part_of_a_stop(
    text: str, stops: list[str]
) -> None:
    stream = _stream(tuple(stops))
    emitted, stopped = "", False
    for char in text:
        piece, stopped = stream.add(ALPHABET.index(char))
        emitted += piece
        if stopped:
            break
    ends = [text.find(s) + len(s) for s in stops if s in text]
    if ends:
        end = min(ends)
        starts = [text.find(s, 0, end) for s in stops if text.find(s, 0, end) >= 0]
        assert stopped
        assert emitted == text[: min(s for s in starts if s >= 0)]
    else:
        assert not stopped
        assert emitted + stream.flush() == text


def test_text_waits_for_a_token_that_completes_a_character() -> None:
    pieces = {0: b"\xc3", 1: b"\xa9", 2: b"!"}

    def decode(ids: list[int]) -> str:
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

    stream = TextStream(decode, ())
    assert stream.add(0) == ("", False)
    assert stream.add(1) == ("é", False)
    assert stream.add(2) == ("!", False)


def _params(**values: object) -> SamplingParams:
    return SamplingParams(**values)  # type: ignore[arg-type]


def test_greedy_top_k_one_and_a_tiny_top_p_all_pick_the_largest_logit() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32)
    rows = [_params(temperature=0), _params(top_k=1, seed=1), _params(top_p=1e-6, seed=2)]
    rngs = [np.random.default_rng(i) for i in range(3)]
    chosen = [c.token_id for c in sample(logits, rows, rngs)]
    assert chosen == [int(np.argmax(row)) for row in logits]


def test_top_k_and_top_p_never_pick_outside_their_set() -> None:
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    top5 = set(np.argsort(-logits)[:5].tolist())
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)
    nucleus = set(order[: int(np.searchsorted(np.cumsum(probabilities[order]), 0.5)) + 1].tolist())
    rng = np.random.default_rng(3)
    for _ in range(200):
        [k] = sample(logits[None], [_params(top_k=5)], [rng])
        [p] = sample(logits[None], [_params(top_p=0.5)], [rng])
        assert k.token_id in top5
        assert p.token_id in nucleus


def test_a_row_draws_the_same_whatever_the_other_rows_are() -> None:
    logits = np.random.default_rng(2).normal(size=(4, 500)).astype(np.float32)
    params = _params(temperature=0.8, top_p=0.9, seed=11)
    [alone] = sample(logits[:1], [params], [np.random.default_rng(11)])
    batch = sample(
        logits,
        [params, _params(temperature=1.2), _params(temperature=0), _params(top_k=3)],
        [np.random.default_rng(s) for s in (11, 5, 6, 7)],
    )
    assert batch[0] == alone


def _cache(rows: int, length: int, fill: float) -> BatchCache:
    cache = BatchCache(num_layers=2, kv_heads=1, head_dim=2)
    arrays = [np.full((rows, 1, length, 2), fill + i, dtype=np.float32) for i in range(4)]
    cache.update([as_value(a) for a in arrays], np.ones((rows, length), dtype=np.int64))
    return cache


def test_joining_left_pads_the_shorter_rows_and_leaving_trims_unused_columns() -> None:
    batch = _cache(rows=1, length=5, fill=10.0)
    batch.join(_cache(rows=1, length=2, fill=20.0))
    key0, _, _, value1 = batch.arrays()
    assert key0.shape == (2, 1, 5, 2)
    assert batch.mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    assert key0[1, 0, :, 0].tolist() == [0, 0, 0, 20, 20]
    assert value1[1, 0, 3:, 0].tolist() == [23, 23]
    step = np.ones((2, 1, 1, 2), dtype=np.float32)
    presents = [as_value(np.concatenate([past, step], axis=2)) for past in batch.arrays()]
    batch.update(presents, batch.extended_mask(1))
    batch.remove([0])
    assert batch.mask.tolist() == [[1, 1, 1]]
    key0 = batch.arrays()[0]
    assert key0.shape == (1, 1, 3, 2)
    assert key0[0, 0, :, 0].tolist() == [20, 20, 1]
    assert batch.bytes_per_token == 2 * 2 * 1 * 2 * 4


def test_the_serving_path_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "import aiaas.serve.server, aiaas.serve.llm.engine, aiaas.serve.llm.metrics\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
