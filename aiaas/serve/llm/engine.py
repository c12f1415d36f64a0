"""The generation engine: iteration-level (continuous) batching over ONNX Runtime.

One thread per engine runs steps. A step first prefills the sequences the scheduler
admits (each alone, in chunks, into its own cache row; its first token is sampled
there) and joins them to the running batch, then decodes one token for every running
sequence in one model run. A sequence that finishes (eos, a stop string, max_tokens)
or whose consumer went away leaves the batch in that same step and its cache row is
freed; nothing waits for the longest member of a batch.

Callers live on the event loop: ``generate`` is an async iterator fed by the thread
through ``call_soon_threadsafe``; stopping the iteration cancels the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np

from aiaas.errors import AiaasError, InternalError, InvalidArgument, Unavailable
from aiaas.serve.llm import sampler
from aiaas.serve.llm.kv_cache import BatchCache, as_value
from aiaas.serve.llm.metrics import EngineMetrics
from aiaas.serve.llm.model import LLMModel
from aiaas.serve.llm.scheduler import Scheduler
from aiaas.serve.llm.sequence import Sequence, TextStream
from aiaas.serve.llm.tokenizer import ChatTokenizer
from aiaas.serve.llm.types import GenerationDelta, SamplingParams, TokenLogprob

log = logging.getLogger(__name__)


class LLMEngine:
    """One loaded language-model version and the thread that generates with it."""

    def __init__(
        self,
        model: LLMModel,
        *,
        model_name: str,
        model_version: str,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.context_length = model.generation.context_length
        self.tokenizer: ChatTokenizer = model.tokenizer
        self.settings = model.settings
        self.metrics = metrics or EngineMetrics()
        self._model = model
        generation = model.generation
        self._eos = frozenset(generation.eos_token_ids)
        self._vocab_size = generation.vocab_size
        self._session = model.runtime.sessions[0]
        self._output_names = ["logits"] + [
            f"present.{layer}.{kind}"
            for layer in range(generation.num_layers)
            for kind in ("key", "value")
        ]
        self.scheduler = Scheduler(
            max_num_seqs=model.settings.max_num_seqs,
            max_waiting=model.settings.max_num_waiting,
            max_prefill_tokens=model.settings.max_prefill_tokens,
        )
        self._cache = self._new_cache()
        self._prefilling = 0
        #: Admitted this step and not yet joined: failed with the rest if a step breaks.
        self._admitted: list[Sequence] = []
        self._accepting = True
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"llm-{model_name}-{model_version}", daemon=True
        )
        self._thread.start()

    # ---- what the server reads -------------------------------------------------------

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running) + self._prefilling

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting

    @property
    def kv_cache_usage(self) -> float:
        """Cache slots held (padding included) over max_num_seqs full-context rows."""
        mask = self._cache.mask
        capacity = self.settings.max_num_seqs * self.context_length
        return float(mask.shape[0] * mask.shape[1]) / capacity

    @property
    def defaults(self) -> dict[str, Any]:
        """The model's generation defaults (temperature, top_p, max_tokens) from its folder."""
        return dict(self._model.generation.raw.get("defaults") or {})

    @property
    def kv_bytes_per_token(self) -> int:
        return self._cache.bytes_per_token

    # ---- the API ---------------------------------------------------------------------

    async def generate(
        self, prompt: str | list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[GenerationDelta]:
        """Deltas as tokens are generated; the last one carries ``finish_reason``.

        Errors about the request (context length, parameters, a full queue) are raised
        before the first delta. Leaving the iteration early cancels the generation.
        """
        if not self._accepting:
            raise Unavailable(
                f"model '{self.model_name}' version {self.model_version} is unloading"
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def deliver(item: object) -> None:
            # A closed loop raises RuntimeError: nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        sequence = self._new_sequence(prompt, params, request_id, deliver)
        self.scheduler.add(sequence)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, AiaasError):
                    raise item
                delta = cast(GenerationDelta, item)
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            if sequence.finish_reason is None and self.scheduler.cancel(sequence):
                self.metrics.finished("abort", time.perf_counter() - sequence.arrival)

    async def close(self, drain_timeout_s: float | None = None) -> None:
        """Refuse new requests, let running and waiting ones finish (up to the timeout),
        end the rest with an error, and stop the thread."""
        self._accepting = False
        timeout = self.settings.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        deadline = time.monotonic() + timeout
        while not self.scheduler.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._stopping.set()
        with self.scheduler.wakeup:
            self.scheduler.wakeup.notify()
        await asyncio.to_thread(self._thread.join)
        self._model.runtime.close()

    # ---- request checks --------------------------------------------------------------

    def _new_sequence(
        self, prompt: str | list[int], params: SamplingParams, request_id: str, deliver: Any
    ) -> Sequence:
        _check_params(params)
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise InvalidArgument("the prompt is empty")
        if any(not 0 <= token < self._vocab_size for token in ids):
            raise InvalidArgument(f"prompt token ids must be in 0..{self._vocab_size - 1}")
        room = self.context_length - len(ids)
        completion = params.max_tokens if params.max_tokens is not None else max(room, 1)
        if len(ids) + completion > self.context_length:
            raise InvalidArgument(
                f"This model's maximum context length is {self.context_length} tokens. "
                f"However, you requested {len(ids) + completion} tokens ({len(ids)} in the "
                f"messages, {completion} in the completion). Please reduce the length of the "
                "messages or completion."
            )
        return Sequence(
            request_id=request_id,
            prompt_ids=ids,
            params=params,
            max_tokens=completion,
            rng=np.random.default_rng(_seed(params.seed)),
            text=TextStream(self.tokenizer.decode, params.stop),
            deliver=deliver,
        )

    # ---- the engine thread -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self.scheduler.wait_for_work(self._stopping)
            if self._stopping.is_set():
                break
            try:
                self._step()
            except Exception:
                log.exception("generation step failed on %s", self.model_name)
                self._end_all(InternalError("generation failed; the server log has the cause"))
        self._end_all(
            Unavailable(
                f"model '{self.model_name}' version {self.model_version} was unloaded "
                "before this generation finished"
            )
        )

    def _step(self) -> None:
        running = self.scheduler.running
        gone = [row for row, seq in enumerate(running) if seq.cancelled]
        if gone:
            self._leave(gone, "abort")
        self._admitted = self.scheduler.admit()
        for group in self._prefill_groups([s for s in self._admitted if not s.cancelled]):
            self._prefill(group)
        self._admitted = []
        if self.scheduler.running:
            self._decode()

    def _prefill_groups(self, admitted: list[Sequence]) -> list[list[Sequence]]:
        """Prompts of one length prefill together (no padding, so nothing to mask); a
        run holds at most ``prefill_chunk_tokens`` positions, which bounds its logits."""
        by_length: dict[int, list[Sequence]] = {}
        for sequence in admitted:
            by_length.setdefault(len(sequence.prompt_ids), []).append(sequence)
        chunk = self.settings.prefill_chunk_tokens
        groups: list[list[Sequence]] = []
        for length, sequences in by_length.items():
            rows = max(1, chunk // min(length, chunk))
            groups += [sequences[i : i + rows] for i in range(0, len(sequences), rows)]
        return groups

    def _prefill(self, group: list[Sequence]) -> None:
        """Prompts of one length, in chunks; their first tokens; then they join the batch."""
        self._prefilling = len(group)
        try:
            cache = self._new_cache(rows=len(group))
            ids = np.asarray([sequence.prompt_ids for sequence in group], dtype=np.int64)
            chunk = self.settings.prefill_chunk_tokens
            logits = np.empty(0, dtype=np.float32)
            for start in range(0, ids.shape[1], chunk):
                part = ids[:, start : start + chunk]
                positions = np.arange(start, start + part.shape[1], dtype=np.int64)
                positions = np.broadcast_to(positions, part.shape).copy()
                logits = self._run(cache, part, positions)
            choices = sampler.sample(
                logits, [seq.params for seq in group], [seq.rng for seq in group]
            )
            now = time.perf_counter()
            deltas = [self._advance(seq, c, now) for seq, c in zip(group, choices, strict=True)]
            cache.remove([row for row, seq in enumerate(group) if seq.finish_reason is not None])
            if cache.rows:
                self._cache.join(cache)
                self.scheduler.running += [seq for seq in group if seq.finish_reason is None]
        finally:
            self._prefilling = 0
        for sequence, delta in zip(group, deltas, strict=True):
            sequence.deliver(delta)

    def _decode(self) -> None:
        running = self.scheduler.running
        input_ids = np.asarray([[seq.output_ids[-1]] for seq in running], dtype=np.int64)
        positions = np.asarray([[seq.position] for seq in running], dtype=np.int64)
        logits = self._run(self._cache, input_ids, positions)
        choices = sampler.sample(
            logits, [seq.params for seq in running], [seq.rng for seq in running]
        )
        now = time.perf_counter()
        deltas = [
            self._advance(sequence, choice, now)
            for sequence, choice in zip(running, choices, strict=True)
        ]
        done = [row for row, seq in enumerate(running) if seq.finish_reason is not None]
        if done:
            self._leave(done, None)
        # Delivered once the finished rows left, so a caller that saw its last delta
        # sees the gauges without it.
        for sequence, delta in zip(running, deltas, strict=True):
            sequence.deliver(delta)

    def _run(self, cache: BatchCache, input_ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """One model run over ``cache``'s rows; updates the cache, returns last logits.

        Values stay ONNX Runtime's between runs: the presents become the next past
        without a copy into numpy (the cache is the largest thing a step moves)."""
        mask = cache.extended_mask(input_ids.shape[1])
        feed = {
            "input_ids": as_value(input_ids),
            "attention_mask": as_value(mask),
            "position_ids": as_value(positions),
            **cache.past_feed(),
        }
        outputs = self._session.run_with_ort_values(self._output_names, feed)
        cache.update(outputs[1:], mask)
        return np.array(outputs[0].numpy()[:, -1, :])

    def _leave(self, rows: list[int], reason: str | None) -> None:
        running = self.scheduler.running
        now = time.perf_counter()
        for row in rows:
            sequence = running[row]
            if reason is not None:
                sequence.finish_reason = reason
                self.metrics.finished(reason, now - sequence.arrival)
        self._cache.remove(rows)
        dropped = set(rows)
        self.scheduler.running = [seq for row, seq in enumerate(running) if row not in dropped]

    def _advance(self, sequence: Sequence, choice: sampler.Choice, now: float) -> GenerationDelta:
        """Record one sampled token; the delta the sequence is to be handed."""
        token = choice.token_id
        sequence.output_ids.append(token)
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self.metrics.first_token(now - sequence.arrival, len(sequence.prompt_ids))
        elif sequence.last_token_at is not None:
            self.metrics.next_token(now - sequence.last_token_at)
        sequence.last_token_at = now
        finish: str | None = None
        if token in self._eos and not sequence.params.ignore_eos:
            finish, text = "stop", sequence.text.flush()
        else:
            text, stopped = sequence.text.add(token)
            if stopped:
                finish = "stop"
            elif len(sequence.output_ids) >= sequence.max_tokens:
                finish, text = "length", text + sequence.text.flush()
        if finish is not None:
            sequence.finish_reason = finish
            self.metrics.finished(finish, now - sequence.arrival)
        return GenerationDelta(
            text=text,
            token_ids=[token],
            logprobs=None if choice.logprob is None else [self._token_logprob(choice)],
            finish_reason=finish,
            prompt_tokens=len(sequence.prompt_ids),
            completion_tokens=len(sequence.output_ids),
        )

    def _token_logprob(self, choice: sampler.Choice) -> TokenLogprob:
        text = self.tokenizer.token_text
        return TokenLogprob(
            token=text(choice.token_id),
            token_id=choice.token_id,
            logprob=float(choice.logprob or 0.0),
            top=[(text(token), token, logprob) for token, logprob in choice.top],
        )

    def _end_all(self, error: AiaasError) -> None:
        """Fail every running and waiting sequence (a broken step, or unloading)."""
        now = time.perf_counter()
        ending = [*self.scheduler.running, *self._admitted, *self.scheduler.drain_waiting()]
        self._admitted = []
        for sequence in ending:
            if sequence.finish_reason is None:
                sequence.finish_reason = "abort"
                self.metrics.finished("abort", now - sequence.arrival)
                sequence.deliver(error)
        self.scheduler.running = []
        self._cache = self._new_cache()

    def _new_cache(self, rows: int = 0) -> BatchCache:
        generation = self._model.generation
        cache = BatchCache(
            generation.num_layers, generation.num_key_value_heads, generation.head_dim
        )
        if rows:
            cache.reset(rows)
        return cache


def _seed(seed: int | None) -> int | None:
    """OpenAI's seed is any integer, negative ones included; numpy's generator takes only
    non-negative ones, so every integer maps to one (the same one each time)."""
    return None if seed is None else seed % 2**64


def _check_params(params: SamplingParams) -> None:
    if params.max_tokens is not None and params.max_tokens < 1:
        raise InvalidArgument("max_tokens must be at least 1")
    if params.temperature < 0:
        raise InvalidArgument("temperature must be >= 0")
    if not 0 < params.top_p <= 1:
        raise InvalidArgument("top_p must be in (0, 1]")
    if params.top_k < 0:
        raise InvalidArgument("top_k must be >= 0 (0 = off)")
    if params.logprobs is not None and not 0 <= params.logprobs <= 20:
        raise InvalidArgument("logprobs must be in 0..20")
