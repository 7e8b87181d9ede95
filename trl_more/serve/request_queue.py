"""Concurrent scoring requests batched together, with bounded latency.

Every request puts one job (its model, its tokenized items, its steering weights) in a queue and waits for the
answer. One worker takes the oldest job, then for at most `max_wait` seconds (or until `batch_size` items are
waiting) takes the jobs that arrive after it; jobs for the same model and weights are scored in one call (so their
items share length-sorted forward passes), in a thread, one call at a time: one copy of every model, never two
forward passes at once. Each job gets exactly its own results back, or the error of its call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .served_model import ScoredItem, ServedModel


__all__ = ["BatchingScorer"]


@dataclass
class _Job:
    model: ServedModel
    items: list[tuple[list[int], int]]
    weights: Mapping[str, float] | None
    future: asyncio.Future

    @property
    def key(self) -> tuple:
        return self.model.name, tuple(sorted(self.weights.items())) if self.weights else None


@dataclass
class BatchingStatistics:
    """How many scoring calls served how many requests and items (the effect of batching)."""

    calls: int = 0
    requests: int = 0
    items: int = 0
    busy_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)


class BatchingScorer:
    """The queue and its worker; `start()` inside the server's event loop, `score(...)` from request handlers."""

    def __init__(self, batch_size: int, max_wait: float):
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.statistics = BatchingStatistics()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def score(
        self, model: ServedModel, items: list[tuple[list[int], int]], weights: Mapping[str, float] | None = None
    ) -> list[ScoredItem]:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(model, items, weights, future))
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while sum(len(job.items) for job in jobs) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                await self._score_group(group)

    async def _score_group(self, group: list[_Job]) -> None:
        items = [item for job in group for item in job.items]
        start = time.perf_counter()
        try:
            results: Any = await asyncio.to_thread(group[0].model.score, items, group[0].weights)
        except Exception as error:  # the requests of this call fail; the server and the other calls go on
            for job in group:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        statistics = self.statistics
        statistics.calls += 1
        statistics.requests += len(group)
        statistics.items += len(items)
        statistics.busy_seconds += time.perf_counter() - start
        statistics.sizes.append(len(items))
        position = 0
        for job in group:
            if not job.future.done():  # a client that went away leaves a cancelled future
                job.future.set_result(results[position : position + len(job.items)])
            position += len(job.items)
