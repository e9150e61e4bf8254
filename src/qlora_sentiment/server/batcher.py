"""Micro-batching for the web API: concurrent requests share forward passes, run on one model thread, and a
forward pass is bounded in tokens so that no request can hold the model for long.

Each text costs the tokens it occupies in a padded forward pass (its prompt included, cut at the model's
max_length; `analyzer.token_lengths`). A forward pass holds at most `max_batch` texts and at most
`max_batch_tokens` padded tokens (texts × the longest text's cost). A request's texts may be split across several
forward passes, and the requests take turns: the request at the front of the queue leads a pass (its next texts
first, then the other requests' texts that fit), and goes to the back of the queue when the next pass is built, so
that requests which arrived during its pass lead that one. A 64-text request of long reviews therefore runs as a
series of short passes, and a short request arriving meanwhile waits for one of them, not for all 64 texts.

An aspect model's request is one text and its aspects: each (text, aspect) pair is an item as a text is, costing
the text's tokens and the aspect's (`analyzer.aspect_token_lengths`), and the pairs of several requests share
forward passes (`analyzer.predict_pairs`) exactly as texts do. One server serves one model: a pass never mixes
texts and pairs.

A request waits at most `max_wait_ms` (counted from the oldest waiting request) for others to join its pass. At
most `max_queue` requests wait; beyond that `submit` refuses (the API answers 503). A request withdrawn (client
gone, time up) sends no more texts to the model: only a pass already running finishes. When a forward pass fails,
each request in it is run again on its own, so that one request's failure is its own; if the worker itself stops,
every waiting request is answered with the failure at once. Each pass is timed (server/pace.py): `lone_seconds`
says what a request would take with the model to itself, so that the web API refuses one its timeout cannot hold.

A request submitted with its deadline is admitted only if, at the measured pace, the pass in progress, the texts
queued ahead and its own would be done by then (`submit` raises TooLate, with the seconds until the work ahead is
done: the API's 503 + Retry-After); and before each pass, the requests whose deadline falls before that pass could
end are removed unanswered (Expired: a 503 now, not after their timeout), so that the model never computes a text
whose answer nobody would receive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from qlora_sentiment.server.pace import Pace
from qlora_sentiment.api.validation import MAX_TEXT_CHARS

log = logging.getLogger("qlora_sentiment.serving")


class QueueFull(Exception):
    """`max_queue` requests are already waiting."""


class ModelFailed(Exception):
    """The forward pass raised on this request's own texts."""


class TooLate(Exception):
    """The work queued ahead would not leave this request time to be answered before its deadline."""

    def __init__(self, ahead: float, retry_after: int):
        super().__init__(f"{ahead:.3g} s of work ahead")
        self.ahead, self.retry_after = ahead, retry_after  # seconds until the work ahead is done; whole seconds


class Expired(Exception):
    """Removed before its next pass: its deadline falls before that pass could end."""


class ModelThread:
    """One daemon thread runs every model call (loading included): never two at once, and a call that hangs does
    not keep the process from exiting."""

    def __init__(self, name: str = "model"):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name=name, daemon=True).start()

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
    costs: list[int]  # tokens each text (or pair) occupies in a forward pass
    future: asyncio.Future
    queued_at: float
    aspects: list[str] | None = None  # an aspect model's request: texts[i]'s aspect (its one text, repeated)
    deadline: float | None = None  # event-loop time by which it must be answered (None: no limit here)
    sent: int = 0  # texts handed to forward passes so far (a request's texts run in order)
    answered: int = 0
    results: list = field(default_factory=list)

    def __post_init__(self):
        self.results = [None] * len(self.texts)


@dataclass
class Stats:
    requests: int = 0         # answered by the model
    texts: int = 0
    forward_batches: int = 0
    failures: int = 0         # requests whose own forward pass raised (answered 500)
    rejected: int = 0         # refused with 503: queue full, model not loaded, or the work ahead too long
    timeouts: int = 0         # no answer within the request timeout (503), or none possible before it
    disconnected: int = 0     # the client left before its answer
    dropped: int = 0          # of those two, requests removed with texts not yet computed


def _predict(analyzer, texts: list[str], aspects: list[str] | None) -> list[dict]:
    """One forward pass: texts, or an aspect model's (text, aspect) pairs."""
    if aspects is None:
        return analyzer.predict(texts, batch_size=len(texts))
    return analyzer.predict_pairs(texts, aspects, batch_size=len(texts))


def _timed(analyzer, texts: list[str], aspects: list[str] | None) -> tuple[list[dict], float]:
    """_predict, and the seconds it took on the model thread."""
    started = time.perf_counter()
    return _predict(analyzer, texts, aspects), time.perf_counter() - started


class MicroBatcher:
    def __init__(self, max_batch: int, max_wait_ms: float, max_queue: int, max_batch_tokens: int = 512):
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.max_batch_tokens = max_batch_tokens
        self.pace = Pace(max_batch, max_batch_tokens)  # the model's measured speed: lone_seconds
        self.thread = ModelThread()
        self.counter = ModelThread("tokens")  # token counts do not wait behind forward passes
        self.pending: deque[Job] = deque()  # requests with texts not yet sent to the model
        self.leader: Job | None = None  # the request the last pass was built around
        self.busy_until: float | None = None  # when the pass in progress should end (event-loop time, measured pace)
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
            analyzer = await self.thread.call(load)
            await self.counter.call(lambda: analyzer.token_lengths(["warm-up"]))  # its tokenizer copy: seconds
            self.analyzer = analyzer
            if on_ready is not None:
                on_ready()
            while True:
                picked = await self._collect()
                if picked:
                    await self._forward(picked)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fault = exc
            while self.pending:  # answered now (500), not after their timeout
                job = self.pending.popleft()
                if not job.future.done():
                    job.future.set_exception(ModelFailed(f"the model worker stopped: {exc}".splitlines()[0]))
            if on_failure is not None:  # the server stops and reports it (one `error:` line)
                on_failure(exc)
            else:
                log.error("the model worker stopped: %s", exc)

    async def costs(self, texts: list[str], aspects: list[str] | None = None, max_chars: int = MAX_TEXT_CHARS
                    ) -> list[int]:
        """Tokens each text (or each pair of one text and its aspects) occupies in a forward pass, counted off the
        event loop and off the model thread; an aspect the model cannot label, or a text over `max_chars` once
        cleaned, raises DataError."""
        analyzer = self.analyzer
        if aspects is None:
            return await self.counter.call(lambda: analyzer.token_lengths(texts, max_chars))
        return await self.counter.call(lambda: analyzer.aspect_token_lengths(texts[0], aspects, max_chars))

    def lone_seconds(self, costs: list[int]) -> tuple[float, int] | None:
        """(seconds, padded tokens) a request of these costs takes with the model to itself, at the measured pace
        (server/pace.py); None until the pace is known."""
        return self.pace.lone_seconds(costs)

    def submit(self, texts: list[str], costs: list[int], aspects: list[str] | None = None,
               deadline: float | None = None) -> Job:
        """Queues a request; QueueFull past `max_queue`, TooLate when it could not be answered by `deadline`."""
        if len(self.pending) >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFull
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None:
            queued = [cost for job in self.pending for cost in job.costs[job.sent:]]
            running = max(0.0, self.busy_until - now) if self.busy_until is not None else 0.0
            refused = self.pace.admission(queued, costs, running, deadline - now)
            if refused is not None:
                self.stats.rejected += 1
                raise TooLate(*refused)
        job = Job(texts, costs, loop.create_future(), now, aspects, deadline)
        self.pending.append(job)
        self.arrived.set()
        return job

    def withdraw(self, job: Job, reason: str) -> None:
        """The client left (`disconnected`) or its time is up (`timeouts`): none of its texts still waiting runs."""
        setattr(self.stats, reason, getattr(self.stats, reason) + 1)
        if job in self.pending:
            self.pending.remove(job)
            self.stats.dropped += 1
        job.future.cancel()

    def _waiting(self) -> tuple[int, int]:
        """Texts and tokens not yet sent to the model."""
        texts = sum(len(j.texts) - j.sent for j in self.pending)
        return texts, sum(sum(j.costs[j.sent:]) for j in self.pending)

    async def _collect(self) -> list[tuple[Job, int]]:
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = self.pending[0].queued_at + self.max_wait
        while self.pending:
            texts, tokens = self._waiting()
            remaining = deadline - loop.time()
            if texts >= self.max_batch or tokens >= self.max_batch_tokens or remaining <= 0:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self._take()

    def _take(self) -> list[tuple[Job, int]]:
        """One forward pass (`_pack`) without the requests whose deadline falls before it could end: those are
        answered Expired at once and the pass is built again without them."""
        while True:
            pending, leader, sent = deque(self.pending), self.leader, [(job, job.sent) for job in self.pending]
            picked = self._pack()
            if not picked:
                return picked
            padded = len(picked) * max(job.costs[i] for job, i in picked)
            horizon = asyncio.get_running_loop().time() + self.pace.pass_seconds(padded)
            late = {job for job, _ in picked if job.deadline is not None and job.deadline < horizon}
            if not late:
                return picked
            self.pending, self.leader = deque(j for j in pending if j not in late), leader
            for job, count in sent:
                job.sent = count
            for job in late:
                self.stats.timeouts += 1
                self.stats.dropped += 1
                if not job.future.done():
                    job.future.set_exception(Expired())

    def _pack(self) -> list[tuple[Job, int]]:
        """(job, text index) pairs of one forward pass: the front request's next texts, then others' that fit."""
        if len(self.pending) > 1 and self.pending[0] is self.leader:
            # rotate now, not after the last take: requests that came in during its pass lead this one
            self.pending.rotate(-1)
        self.leader = self.pending[0] if self.pending else None
        picked: list[tuple[Job, int]] = []
        width = 0  # the longest text's cost: every row is padded to it
        for job in list(self.pending):
            while job.sent < len(job.texts):
                cost = job.costs[job.sent]
                if picked and (len(picked) >= self.max_batch
                               or (len(picked) + 1) * max(width, cost) > self.max_batch_tokens):
                    break
                picked.append((job, job.sent))
                width = max(width, cost)
                job.sent += 1
        self.pending = deque(j for j in self.pending if j.sent < len(j.texts))
        return picked

    async def _forward(self, picked: list[tuple[Job, int]]) -> None:
        texts = [job.texts[i] for job, i in picked]
        aspects = None if picked[0][0].aspects is None else [job.aspects[i] for job, i in picked]
        analyzer = self.analyzer
        rate = self.pace.seconds_per_token
        if rate is not None:
            padded = len(picked) * max(job.costs[i] for job, i in picked)
            self.busy_until = asyncio.get_running_loop().time() + padded * rate
        try:
            predictions, seconds = await self.thread.call(lambda: _timed(analyzer, texts, aspects))
        except Exception as exc:
            jobs = list(dict.fromkeys(job for job, _ in picked))
            if len(jobs) > 1:  # find whose texts fail: each request's share on its own
                for job in jobs:
                    if not job.future.done():
                        await self._forward([(j, i) for j, i in picked if j is job])
                return
            job = jobs[0]
            if job.future.done():  # withdrawn meanwhile: nobody gets this 500
                return
            log.exception("forward pass failed on one request (%d texts)", len(texts))
            self.stats.failures += 1
            if job in self.pending:  # its other texts are not worth computing
                self.pending.remove(job)
            if not job.future.done():
                job.future.set_exception(ModelFailed(f"{type(exc).__name__}: {exc}".splitlines()[0]))
            return
        self.stats.forward_batches += 1
        self.pace.record(len(picked), len(picked) * max(job.costs[i] for job, i in picked), seconds)
        self.stats.texts += len(texts)
        for (job, i), prediction in zip(picked, predictions):
            job.results[i] = prediction
            job.answered += 1
            if job.future.done() or job.answered < len(job.texts):
                continue
            self.stats.requests += 1
            job.future.set_result(job.results)
