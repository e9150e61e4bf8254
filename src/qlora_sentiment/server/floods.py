"""What keeps a flood from filling `serve`'s descriptors and log: the connection cap fitted under ulimit -n, and
log records of a kind let through once a minute."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import OrderedDict


RESERVED_FDS = 64  # beyond the connections: the model's files, the listening socket, the loop's pipes, logs


def fit_connections(wanted: int) -> int:
    """`wanted` connections, or fewer when this process may not open enough files: the soft RLIMIT_NOFILE is raised
    toward the hard one first; what is still missing lowers the cap (one warning), so that accept() never runs out
    of descriptors."""
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 32
    need = wanted + open_now + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < need:
        target = need if hard == unlimited else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == unlimited or soft >= need:
        return wanted
    fitted = max(1, soft - open_now - RESERVED_FDS)
    print(f"warning: --max-connections {wanted} lowered to {fitted}: this process may open {soft} files "
          f"(ulimit -n); raise it to serve more", file=sys.stderr, flush=True)
    return fitted


class OncePerMinute(logging.Filter):
    """Lets one record of a kind through per `period` seconds (a kind: logger, level and first line, numbers
    ignored); the next one that passes says how many were held back. A process out of descriptors, or a flood of
    malformed requests, writes a line a minute instead of one per attempt."""

    def __init__(self, period: float = 60.0, clock=time.monotonic, kinds: int = 256):
        super().__init__()
        self.period, self.clock, self.kinds = period, clock, kinds
        self.seen: OrderedDict = OrderedDict()  # kind -> [when it last passed, records held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        first = str(record.msg).split("\n", 1)[0][:120]
        kind = (record.name, record.levelno, re.sub(r"\d+", "#", first))
        now = self.clock()
        state = self.seen.get(kind)
        if state is not None and now - state[0] < self.period:
            state[1] += 1
            return False
        held = state[1] if state is not None else 0
        self.seen[kind] = [now, 0]
        self.seen.move_to_end(kind)
        while len(self.seen) > self.kinds:
            self.seen.popitem(last=False)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.period:g} s were not logged)"
        return True


def quiet_floods(*loggers: str) -> None:
    """OncePerMinute on the loggers that a flood makes talk: asyncio (accept() out of descriptors) and uvicorn's
    (one warning per malformed request)."""
    for name in loggers or ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerMinute) for f in logger.filters):
            logger.addFilter(OncePerMinute())
