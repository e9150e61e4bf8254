"""How fast the model answers, measured on the forward passes the server runs, and what one request would cost
alone: a request whose own forward passes would outlast its timeout even with the model to itself is refused up
front (web.py: 413 naming the estimate and the timeout) instead of running into a 503 after spending the model's
time.

A pass costs its padded tokens (texts x the longest one's tokens, as the batcher builds it). The pace is the
median seconds per padded token of the last WINDOW passes that were at least half full (half of
`max_batch_tokens`, or `max_batch` texts): small passes are dominated by a fixed overhead and would overstate a
big request's cost. Until MIN_PASSES such passes have run, nothing is estimated (and nothing refused). A request
is estimated as the batcher runs it alone: its texts in order, in passes of at most `max_batch` texts and
`max_batch_tokens` padded tokens.

Admission by deadline (issue 39 item 6): past the model's capacity a queue fills until each request waits about
its whole timeout, is then taken into a pass and times out during it, so most of the model's time goes to answers
nobody receives. `admission` estimates when a new request would be answered (the rest of the pass running now,
then the texts queued ahead and its own, packed as the batcher packs them, at the measured pace) and refuses it
at once (503 + Retry-After: when the work ahead would be done) if that is past its deadline; the batcher also
drops from each pass it builds the requests whose deadline falls before that pass could end (`pass_seconds`). Before
the pace is known both admit everything, as before.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

WINDOW = 16     # recent passes the pace is read from
MIN_PASSES = 3  # measured passes before any estimate
SLACK = 1.25    # a pass may run a quarter longer than the median pace says, and its answer must still be in time


def lone_passes(costs: list[int], max_batch: int, max_batch_tokens: int) -> list[int]:
    """The padded tokens of each forward pass a request of these text costs takes when it runs alone (the
    batcher's packing: `MicroBatcher._take`)."""
    passes, count, width = [], 0, 0
    for cost in costs:
        if count and (count >= max_batch or (count + 1) * max(width, cost) > max_batch_tokens):
            passes.append(count * width)
            count, width = 0, 0
        count, width = count + 1, max(width, cost)
    if count:
        passes.append(count * width)
    return passes


def admission(queued: list[int], own: list[int], seconds_per_token: float | None, time_left: float,
              max_batch: int, max_batch_tokens: int, running: float = 0.0) -> tuple[float, int] | None:
    """None to admit a request of text costs `own` behind the unsent texts `queued` (in the batcher's order), with
    `running` seconds left of the pass in progress and `time_left` seconds before its deadline; else (seconds until
    the work ahead would be done, Retry-After: those seconds rounded up, at least 1). Admits while the pace is
    unknown."""
    if seconds_per_token is None:
        return None
    if running + sum(lone_passes(queued + own, max_batch, max_batch_tokens)) * seconds_per_token <= time_left:
        return None
    ahead = running + sum(lone_passes(queued, max_batch, max_batch_tokens)) * seconds_per_token
    return ahead, max(1, math.ceil(ahead))


class Pace:
    def __init__(self, max_batch: int, max_batch_tokens: int):
        self.max_batch, self.max_batch_tokens = max_batch, max_batch_tokens
        self.rates: deque[float] = deque(maxlen=WINDOW)  # seconds per padded token of recent full passes

    def record(self, texts: int, padded: int, seconds: float) -> None:
        """One forward pass ran: `texts` rows padded to `padded` tokens in all, in `seconds`."""
        if padded > 0 and (texts >= self.max_batch or 2 * padded >= self.max_batch_tokens):
            self.rates.append(seconds / padded)

    @property
    def seconds_per_token(self) -> float | None:
        return statistics.median(self.rates) if len(self.rates) >= MIN_PASSES else None

    def lone_seconds(self, costs: list[int]) -> tuple[float, int] | None:
        """(seconds, padded tokens) the request would take with the model to itself, or None before the pace is
        known."""
        rate = self.seconds_per_token
        if rate is None:
            return None
        padded = sum(lone_passes(costs, self.max_batch, self.max_batch_tokens))
        return padded * rate, padded

    def pass_seconds(self, padded: int) -> float:
        """How long a pass of `padded` tokens may take at the measured pace, with SLACK; 0 before the pace is
        known."""
        rate = self.seconds_per_token
        return 0.0 if rate is None else SLACK * rate * padded

    def admission(self, queued: list[int], own: list[int], running: float, time_left: float
                  ) -> tuple[float, int] | None:
        """`admission` at the measured pace."""
        return admission(queued, own, self.seconds_per_token, time_left, self.max_batch, self.max_batch_tokens,
                         running)
