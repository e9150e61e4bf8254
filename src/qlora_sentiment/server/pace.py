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
"""

from __future__ import annotations

import statistics
from collections import deque

WINDOW = 16     # recent passes the pace is read from
MIN_PASSES = 3  # measured passes before any estimate


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
