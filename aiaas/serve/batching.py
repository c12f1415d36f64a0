"""The dynamic batcher: one bounded queue per model version in front of its runtime.

Each request gets a future; compatible requests (same non-batch shapes and
dtypes) are merged into one runtime call of at most ``max_batch_size`` rows,
waiting at most ``max_queue_delay_us`` for company; each caller gets exactly its
own rows back, and a failed batch fails each of its futures. A full queue is
refused at once, and a request that outlives its queue timeout never runs.
Merge and split are pure functions so they can be tested alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from aiaas.errors import AiaasError, InternalError, InvalidArgument, Unavailable
from aiaas.serve.serving_config import BatchingConfig, QueuePolicy
from aiaas.serve.stats import ComputeTimes, ModelStats

log = logging.getLogger(__name__)

RunFn = Callable[[int, Mapping[str, np.ndarray], Sequence[str]], dict[str, np.ndarray]]
Tensors = dict[str, np.ndarray]


def batch_key(inputs: Mapping[str, np.ndarray], batched: bool) -> Hashable:
    """Requests merge only when every input agrees on dtype and non-batch dimensions."""
    if not batched:
        return None
    return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))


def merge(requests: Sequence[Mapping[str, np.ndarray]]) -> Tensors:
    """Concatenate the inputs of compatible requests along the batch dimension."""
    if len(requests) == 1:
        return dict(requests[0])
    return {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}


def split(outputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> list[Tensors]:
    """Cut batched outputs back into per-request pieces of ``rows`` rows each."""
    if len(rows) == 1:
        return [dict(outputs)]
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise InternalError(
                f"output '{name}' has shape {list(array.shape)}, not a batch of {total} rows"
            )
    pieces: list[Tensors] = [{} for _ in rows]
    for name, array in outputs.items():
        # Plain slices (views): np.split costs several times more per piece.
        start = 0
        for piece, count in zip(pieces, rows, strict=True):
            piece[name] = array[start : start + count]
            start += count
    return pieces


@dataclass(slots=True, eq=False)
class _Pending:
    inputs: Tensors
    outputs: tuple[str, ...]
    rows: int
    key: Hashable
    level: int
    future: asyncio.Future[Tensors]
    enqueued_ns: int
    timer: asyncio.TimerHandle | None = None
    queued: bool = True


@dataclass(slots=True)
class _Batch:
    items: list[_Pending] = field(default_factory=list)
    rows: int = 0


class Batcher:
    """Queue + workers for one model version; ``instance_count`` batches run at once."""

    def __init__(
        self,
        run: RunFn,
        *,
        max_batch_size: int,
        batching: BatchingConfig,
        instance_count: int,
        stats: ModelStats,
    ) -> None:
        self._run = run
        self._max_batch_size = max_batch_size
        # As Triton: with preferred sizes, a batch formed from a long queue stops at the
        # largest of them (bigger batches can be slower per row; the model owner knows).
        preferred = batching.preferred_batch_sizes
        self._batch_limit = max(preferred) if preferred else max_batch_size
        self._batched = max_batch_size > 0
        self._config = batching
        self._stats = stats
        levels = max(batching.priority_levels, 1)
        self._queues: list[deque[_Pending]] = [deque() for _ in range(levels + 1)]
        self._queued = 0
        #: Rows waiting in every queue: a forming batch is woken once these could fill it.
        self._queued_rows = 0
        self._in_flight = 0
        self._arrived = asyncio.Event()
        #: The batch a worker is filling and the future its wait ends on, if one is.
        self._forming: _Batch | None = None
        self._wake: asyncio.Future[bool] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._executor = ThreadPoolExecutor(instance_count, thread_name_prefix=f"run-{stats.name}")
        self._workers = [asyncio.create_task(self._work(i)) for i in range(instance_count)]

    @property
    def queue_depth(self) -> int:
        return self._queued

    async def infer(
        self,
        inputs: Tensors,
        outputs: Sequence[str],
        *,
        priority: int = 0,
        timeout_us: int | None = None,
    ) -> Tensors:
        """Queue one request and wait for its rows; raises Unavailable on overload."""
        if self._closing:
            raise Unavailable(
                f"model '{self._stats.name}' version {self._stats.version} is unloading"
            )
        level = self._level(priority)
        policy = self._config.queue_policies.get(level, self._config.queue_policies[0])
        # As Triton: each priority level's queue is bounded on its own, so requests of
        # one level filling their queue never refuse those of another.
        if len(self._queues[level]) >= policy.max_queue_size:
            which = f"its priority {level} queue" if level else "its queue"
            raise Unavailable(
                f"model '{self._stats.name}' is overloaded: {which} is full "
                f"(max_queue_size {policy.max_queue_size}); retry later"
            )
        loop = asyncio.get_running_loop()
        rows = _rows(inputs) if self._batched else 1
        pending = _Pending(
            inputs=inputs,
            outputs=tuple(outputs),
            rows=rows,
            key=batch_key(inputs, self._batched),
            level=level,
            future=loop.create_future(),
            enqueued_ns=time.perf_counter_ns(),
        )
        timeout = effective_timeout_us(policy, timeout_us)
        if timeout:
            pending.timer = loop.call_later(timeout / 1e6, self._expire, pending, policy, timeout)
        self._queues[level].append(pending)
        self._queued += 1
        self._queued_rows += rows
        self._idle.clear()
        self._arrived.set()
        forming = self._forming
        if forming is not None and forming.rows + self._queued_rows >= self._batch_limit:
            _resolve(self._wake, False)
        return await pending.future

    def _level(self, priority: int) -> int:
        levels = self._config.priority_levels
        if not levels:
            return 0
        if priority == 0:
            return self._config.default_priority_level
        if not 0 < priority <= levels:
            raise InvalidArgument(f"priority {priority} is outside 1..{levels} for this model")
        return priority

    def _expire(self, pending: _Pending, policy: QueuePolicy, timeout_us: int) -> None:
        if not pending.queued or policy.delay_on_timeout:
            return
        self._queues[pending.level].remove(pending)
        self._dequeued(pending)
        if not pending.future.done():
            pending.future.set_exception(
                Unavailable(f"request timed out after {timeout_us} us in the queue; it did not run")
            )

    def _dequeued(self, pending: _Pending) -> None:
        pending.queued = False
        self._queued -= 1
        self._queued_rows -= pending.rows
        if pending.timer is not None:
            pending.timer.cancel()
        if self._queued == 0 and self._in_flight == 0:
            self._idle.set()

    async def _work(self, instance: int) -> None:
        while True:
            while not self._queued:
                self._arrived.clear()
                await self._arrived.wait()
            # In flight from the moment requests leave the queue, so close() cannot see an
            # idle batcher (and cancel this worker) while a batch is still being formed.
            self._in_flight += 1
            batch = _Batch()
            try:
                await self._form_batch(batch)
                if batch.items:
                    await self._execute(instance, batch)
            except asyncio.CancelledError:
                _fail(batch.items, Unavailable("model version was unloaded"))
                raise
            finally:
                self._in_flight -= 1
                if self._queued == 0 and self._in_flight == 0:
                    self._idle.set()

    async def _form_batch(self, batch: _Batch) -> None:
        self._take(batch)
        delay_ns = self._config.max_queue_delay_us * 1000
        if not batch.items or not delay_ns or not self._batched:
            return
        deadline = batch.items[0].enqueued_ns + delay_ns
        loop = asyncio.get_running_loop()
        while not self._full(batch):
            remaining = (deadline - time.perf_counter_ns()) / 1e9
            if remaining <= 0:
                break
            # One timer for the wait, and no wake-up per arrival: `infer` ends the wait
            # only once the queued rows could fill the batch (each wake-up costs the
            # event loop a task switch while it is busiest).
            wake: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_later(remaining, _resolve, wake, True)
            self._forming, self._wake = batch, wake
            try:
                timed_out = await wake
            finally:
                timer.cancel()
                if self._wake is wake:  # another instance's worker may be filling now
                    self._forming = self._wake = None
            self._take(batch)
            if timed_out:
                break

    def _full(self, batch: _Batch) -> bool:
        return batch.rows >= self._batch_limit

    def _take(self, batch: _Batch) -> None:
        """Move queued requests that fit into the batch, highest priority first."""
        for queue in self._queues[1:] + self._queues[:1]:
            kept: deque[_Pending] = deque()
            while queue:
                pending = queue.popleft()
                if pending.future.done():  # the caller went away
                    self._dequeued(pending)
                    continue
                if batch.items and (
                    not self._batched
                    or pending.key != batch.items[0].key
                    or batch.rows + pending.rows > self._batch_limit
                ):
                    kept.append(pending)
                    continue
                self._dequeued(pending)
                batch.items.append(pending)
                batch.rows += pending.rows
            queue.extend(kept)

    async def _execute(self, instance: int, batch: _Batch) -> None:
        start_ns = time.perf_counter_ns()
        items = batch.items
        names = tuple(dict.fromkeys(name for p in items for name in p.outputs))
        loop = asyncio.get_running_loop()
        try:
            pieces, times = await loop.run_in_executor(
                self._executor, self._compute, instance, items, names
            )
        except Exception as error:
            if len(items) == 1:
                _fail(items, error)
                return
            # One bad request must not fail the others it was merged with: run each alone.
            for pending in items:
                await self._execute(instance, _Batch([pending], pending.rows))
            return
        self._stats.record_execution(batch.rows if self._batched else 1, times)
        for pending, piece in zip(items, pieces, strict=True):
            if not pending.future.done():
                self._stats.record_request_compute(start_ns - pending.enqueued_ns, times)
                pending.future.set_result({name: piece[name] for name in pending.outputs})

    def _compute(
        self, instance: int, items: list[_Pending], names: tuple[str, ...]
    ) -> tuple[list[Tensors], ComputeTimes]:
        t0 = time.perf_counter_ns()
        merged = merge([p.inputs for p in items])
        t1 = time.perf_counter_ns()
        outputs = self._run(instance, merged, names)
        t2 = time.perf_counter_ns()
        pieces = split(outputs, [p.rows for p in items]) if self._batched else [outputs]
        t3 = time.perf_counter_ns()
        return pieces, ComputeTimes(t1 - t0, t2 - t1, t3 - t2)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking requests, let queued and running ones finish, release the runtime."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("model %s: unload gave up waiting for queued requests", self._stats.name)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for queue in self._queues:
            while queue:
                pending = queue.popleft()
                self._dequeued(pending)
                if not pending.future.done():
                    pending.future.set_exception(Unavailable("model version was unloaded"))
        self._executor.shutdown(wait=True)


def _resolve(wake: asyncio.Future[bool] | None, timed_out: bool) -> None:
    if wake is not None and not wake.done():
        wake.set_result(timed_out)


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    return next(iter(inputs.values())).shape[0] if inputs else 0


def effective_timeout_us(policy: QueuePolicy, requested_us: int | None) -> int:
    """How long a request may wait in the queue (0: no limit), by Triton's rule (its
    PolicyQueue::Enqueue): the policy's default timeout, which a request's own timeout
    replaces only when the policy allows overriding and the request's is shorter. So a
    request can shorten its wait, never lengthen it, nor set one where the policy has none.
    """
    default = policy.default_timeout_us
    if policy.allow_timeout_override and requested_us and requested_us < default:
        return requested_us
    return default


def _fail(items: Sequence[_Pending], error: Exception) -> None:
    failure = error if isinstance(error, AiaasError) else _runtime_failure(error)
    for pending in items:
        if not pending.future.done():
            pending.future.set_exception(failure)


def _runtime_failure(error: Exception) -> AiaasError:
    log.error("model execution failed: %s", error)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return InternalError(f"model execution failed: {message}")
