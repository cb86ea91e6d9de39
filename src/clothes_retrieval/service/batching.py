"""Group concurrent requests into one call: one forward pass per model for several photos.

:class:`Batcher` runs ``fn(payloads) -> results`` on one worker thread. A request waits
at most ``window_s`` for others with the same ``key`` (the same search options) to join
it, up to ``max_batch``; ``window_s = 0`` answers each request alone (still one at a time:
on a CPU, two forward passes side by side only fight for the cores).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher"]


@dataclass
class _Job:
    key: Hashable
    payload: Any
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        fn: Callable[[Hashable, Sequence[Any]], Sequence[Any]],
        *,
        max_batch: int = 8,
        window_s: float = 0.005,
    ) -> None:
        self.fn, self.max_batch, self.window_s = fn, max(1, max_batch), max(0.0, window_s)
        self._queue: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batches = 0
        self.jobs = 0
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, key: Hashable, payload: Any) -> Future:
        job = _Job(key, payload)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5)

    def _take(self) -> list[_Job] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                return None
            first = self._queue.popleft()
            batch = [first]
            if self.window_s <= 0:  # no batching: not even with requests already queued
                return batch
            deadline = first.queued + self.window_s
            while len(batch) < self.max_batch:
                same = next((j for j in self._queue if j.key == first.key), None)
                if same is not None:
                    self._queue.remove(same)
                    batch.append(same)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cv.wait(left)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self.fn(batch[0].key, [j.payload for j in batch])
            except BaseException as e:  # every waiting request gets the error
                for j in batch:
                    j.future.set_exception(e)
                continue
            self.batches += 1
            self.jobs += len(batch)
            for j, r in zip(batch, results, strict=True):
                j.future.set_result(r)
