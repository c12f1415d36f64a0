"""Who runs in the next step: a bounded waiting queue in arrival order, and the running
batch capped at ``max_num_seqs``.

Requests arrive from the event loop and are admitted by the engine thread, so the
waiting queue sits behind a lock; the running list belongs to the engine thread alone.
A full waiting queue refuses at once (429) rather than letting latency grow unbounded.
"""

from __future__ import annotations

import threading
from collections import deque

from aiaas.errors import TooManyRequests
from aiaas.serve.llm.sequence import Sequence


class Scheduler:
    def __init__(self, *, max_num_seqs: int, max_waiting: int, max_prefill_tokens: int) -> None:
        self.max_num_seqs = max_num_seqs
        self.max_waiting = max_waiting
        self.max_prefill_tokens = max_prefill_tokens
        self.running: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._lock = threading.Lock()
        #: Wakes the engine thread when there is work (a request, a cancellation, close).
        self.wakeup = threading.Condition(self._lock)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def add(self, sequence: Sequence) -> None:
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise TooManyRequests(
                    f"the model's waiting queue is full ({self.max_waiting} requests); retry later"
                )
            self._waiting.append(sequence)
            self.wakeup.notify()

    def cancel(self, sequence: Sequence) -> bool:
        """Called from the event loop: a waiting one leaves now (True), a running one at
        the next step."""
        with self._lock:
            sequence.cancelled = True
            waiting = sequence in self._waiting
            if waiting:
                self._waiting.remove(sequence)
            self.wakeup.notify()
        return waiting

    def admit(self) -> list[Sequence]:
        """Waiting sequences to prefill this step: free slots and the prefill budget allow.

        The first one is always admitted when a slot is free, however long its prompt,
        so a long prompt is never starved by the budget.
        """
        admitted: list[Sequence] = []
        budget = self.max_prefill_tokens
        with self._lock:
            while self._waiting and len(self.running) + len(admitted) < self.max_num_seqs:
                cost = len(self._waiting[0].prompt_ids)
                if admitted and cost > budget:
                    break
                budget -= cost
                admitted.append(self._waiting.popleft())
        return admitted

    def idle(self) -> bool:
        return not self.running and not self._waiting

    def wait_for_work(self, stopping: threading.Event) -> None:
        with self._lock:
            while not self.running and not self._waiting and not stopping.is_set():
                self.wakeup.wait()

    def drain_waiting(self) -> list[Sequence]:
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        return waiting
