"""One request's generation state: its tokens, its random stream, and its text so far.

Text is decoded incrementally (a token's bytes may complete a character only with the
next token, so text is emitted once it no longer ends in a replacement character), and
held back while its tail could still begin a stop string: a client never sees part of
a stop string, nor the stop string itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aiaas.serve.llm.types import SamplingParams

Decode = Callable[[list[int]], str]


class TextStream:
    """Incremental detokenizer with stop-string hold-back."""

    def __init__(self, decode: Decode, stop: tuple[str, ...]) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._held = ""

    def add(self, token_id: int) -> tuple[str, bool]:
        """Text now safe to emit, and whether a stop string was reached (text ends before it)."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return "", False
        self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
        return self._check(self._held + full[len(prefix) :])

    def flush(self) -> str:
        """What was held back, at the end of a generation that stopped for another reason."""
        held, self._held = self._held, ""
        return held

    def _check(self, text: str) -> tuple[str, bool]:
        found = [index for s in self._stop if (index := text.find(s)) >= 0]
        if found:
            self._held = ""
            return text[: min(found)], True
        hold = max((_overlap(text, s) for s in self._stop), default=0)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that begins ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0


@dataclass(eq=False)
class Sequence:
    """A request from admission to finish; touched only by the engine thread once queued."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    rng: np.random.Generator
    text: TextStream
    deliver: Callable[[object], None]
    arrival: float = field(default_factory=time.perf_counter)
    output_ids: list[int] = field(default_factory=list)
    first_token_at: float | None = None
    last_token_at: float | None = None
    finish_reason: str | None = None
    #: Set from the event loop when the consumer goes away; the engine drops the row.
    cancelled: bool = False

    @property
    def position(self) -> int:
        """Tokens in the cache (the next token's position id)."""
        return len(self.prompt_ids) + len(self.output_ids) - 1
