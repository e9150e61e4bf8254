"""Micro-batching for the web API: concurrent requests share one forward pass, run on one model thread.

A request waits at most `max_wait_ms` (counted from the oldest waiting request) for others to join its batch, up
to `max_batch` texts. At most `max_queue` requests wait; beyond that `submit` refuses (the API answers 503). A
request withdrawn before its batch leaves (client gone, time up) never reaches the model. When a forward pass
fails, each request of the batch is run again on its own, so that one request's failure is its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("qlora_sentiment.serving")


class QueueFull(Exception):
    """`max_queue` requests are already waiting."""


class ModelFailed(Exception):
    """The forward pass raised on this request's own texts."""


class ModelThread:
    """One daemon thread runs every model call (loading included): never two at once, and a call that hangs does
    not keep the process from exiting."""

    def __init__(self):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name="model", daemon=True).start()

    def _work(self) -> None:
        while True:
            func, future = self._calls.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as exc:  # handed to the waiting coroutine
                    future.set_exception(exc)

    async def call(self, func):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((func, future))
        return await asyncio.wrap_future(future)


@dataclass(eq=False)  # compared by identity: a job is removed from the queue by `withdraw`
class Job:
    texts: list[str]
    future: asyncio.Future
    queued_at: float


@dataclass
class Stats:
    requests: int = 0         # answered by the model
    texts: int = 0
    forward_batches: int = 0
    failures: int = 0         # requests whose own forward pass raised (answered 500)
    rejected: int = 0         # refused with 503: queue full or model not loaded
    timeouts: int = 0         # no answer within the request timeout (503)
    disconnected: int = 0     # the client left before its answer
    dropped: int = 0          # of those two, requests removed before their forward pass


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait_ms: float, max_queue: int):
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.thread = ModelThread()
        self.pending: deque[Job] = deque()
        self.arrived = asyncio.Event()
        self.stats = Stats()
        self.analyzer = None
        self.task: asyncio.Task | None = None
        self.fault: BaseException | None = None  # the load or the worker loop failed

    @property
    def ready(self) -> bool:
        return self.analyzer is not None and self.task is not None and not self.task.done()

    @property
    def depth(self) -> int:
        return len(self.pending)

    def start(self, load, on_ready=None, on_failure=None) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main(load, on_ready, on_failure))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        while self.pending:
            self.pending.popleft().future.cancel()

    async def _main(self, load, on_ready, on_failure) -> None:
        try:
            self.analyzer = await self.thread.call(load)
            if on_ready is not None:
                on_ready()
            while True:
                jobs = await self._collect()
                if jobs:
                    await self._forward(jobs)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fault = exc
            if on_failure is not None:  # the server stops and reports it (one `error:` line)
                on_failure(exc)
            else:
                log.error("the model worker stopped: %s", exc)

    def submit(self, texts: list[str]) -> Job:
        if len(self.pending) >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFull
        loop = asyncio.get_running_loop()
        job = Job(texts, loop.create_future(), loop.time())
        self.pending.append(job)
        self.arrived.set()
        return job

    def withdraw(self, job: Job, reason: str) -> None:
        """The client left (`disconnected`) or its time is up (`timeouts`): drop it if it still waits."""
        setattr(self.stats, reason, getattr(self.stats, reason) + 1)
        if job in self.pending:
            self.pending.remove(job)
            self.stats.dropped += 1
        job.future.cancel()

    async def _collect(self) -> list[Job]:
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = self.pending[0].queued_at + self.max_wait
        while self.pending and sum(len(j.texts) for j in self.pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        jobs, size = [], 0
        while self.pending and (not jobs or size + len(self.pending[0].texts) <= self.max_batch):
            jobs.append(self.pending.popleft())
            size += len(jobs[-1].texts)
        return jobs

    async def _forward(self, jobs: list[Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        analyzer = self.analyzer
        try:
            predictions = await self.thread.call(lambda: analyzer.predict(texts, batch_size=self.max_batch))
        except Exception as exc:
            if len(jobs) > 1:  # find whose texts fail: each request on its own
                for job in jobs:
                    if not job.future.done():
                        await self._forward([job])
                return
            log.exception("forward pass failed on one request (%d texts)", len(texts))
            self.stats.failures += 1
            if not jobs[0].future.done():
                jobs[0].future.set_exception(ModelFailed(f"{type(exc).__name__}: {exc}".splitlines()[0]))
            return
        self.stats.forward_batches += 1
        self.stats.requests += len(jobs)
        self.stats.texts += len(texts)
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(predictions[start:start + len(job.texts)])
            start += len(job.texts)
