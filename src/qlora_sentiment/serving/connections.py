"""Connections for `serve`: uvicorn's h11 protocol with the bounds uvicorn lacks, the file descriptors they need,
and logs that a flood cannot fill.

Read in uvicorn 0.54 (protocols/http/h11_impl.py) and asyncio (selector_events.py): a new connection arms no timer
(the keep-alive timer starts only after a first answer, and is cancelled as soon as any byte arrives), so a
connection that sends nothing, or half a request line, stays open forever; `limit_concurrency` still accepts every
connection (and its 503 is text/plain); and asyncio accepts up to `backlog` (2048) connections per loop pass, so a
process out of descriptors fails accept() up to 2048 times a pass, logging a traceback each time. Here:

- the listening socket's accept() keeps at most `max_connections` sockets open: beyond that it closes the
  connections that have waited longest without a request in progress (an idle flood cannot lock clients out) and
  accepts more on asyncio's next pass, once their descriptors are free (newcomers wait in the kernel's queue
  meanwhile); when every connection has a request in progress, a newcomer gets a 503 in the one error shape and
  is closed at once. accept() never runs out of
  descriptors (`fit_connections` keeps the cap under ulimit -n);
- a connection that has not sent a whole request head within `idle_timeout` seconds of opening (or of its last
  answer) is closed;
- uvicorn's own 400 for a malformed request ("Invalid HTTP request received.", text/plain) is a JSON error in the
  one shape, naming what h11 found (the status is h11's hint: 400, or 431 for a head over 16 KiB).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from collections import OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from qlora_sentiment.serving.guard import NOSNIFF

ROOM_AT_ONCE = 32  # idle connections closed at once when the cap is reached (a flood arrives in bursts)
REFUSED_AT_ONCE = 64  # newcomers refused per accept() call when every connection is busy; then the loop goes on


def _error_bytes(status: int, reason: str, detail: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"detail": detail, "field": None}, separators=(",", ":")).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after else ""
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\nx-content-type-options: nosniff\r\n\r\n").encode() + body


class Connections:
    """The open connections of one server: how many sockets are open, and which wait without a request."""

    def __init__(self, max_connections: int, idle_timeout: float):
        self.max, self.idle_timeout = max_connections, idle_timeout
        self.open = 0  # accepted sockets not yet closed
        self.made = 0  # of those, connections whose protocol has started (asyncio starts it a loop pass later)
        self.waiting: OrderedDict = OrderedDict()  # protocols without a request in progress, longest waiting first
        self.busy = _error_bytes(503, "Service Unavailable", f"busy: {max_connections} connections are open "
                                 "with requests in progress; retry", retry_after=1)

    def protocol(self) -> type:
        """The protocol class for uvicorn.Config(http=...)."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"pool": self})

    def listener(self, sock: socket.socket) -> socket.socket:
        """`sock` (listening) as a socket whose accept() keeps to the cap."""
        listener = _Listener(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.pool = self
        return listener

    def make_room(self) -> bool:
        """Close up to ROOM_AT_ONCE connections that wait without a request, longest waiting first."""
        closed = 0
        while self.waiting and closed < ROOM_AT_ONCE:
            oldest, _ = self.waiting.popitem(last=False)
            if oldest.idle():
                oldest.transport.close()  # its descriptor is closed at the start of the loop's next pass
                closed += 1
        return closed > 0


class _Counted(socket.socket):
    """An accepted connection, counted open until its descriptor is closed."""
    pool: Connections | None = None

    def _real_close(self, *args):  # what close() calls once the descriptor is to be closed
        if self.pool is not None and self.fileno() != -1:
            self.pool.open -= 1
            self.pool = None
        super()._real_close(*args)


class _Listener(socket.socket):
    pool: Connections

    def accept(self):
        pool = self.pool
        refused = 0
        while pool.open >= pool.max:
            if pool.make_room() or pool.made < pool.open or refused >= REFUSED_AT_ONCE:
                raise BlockingIOError  # asyncio stops this pass, and accepts again on the next one
            fd, _ = self._accept()  # every connection is busy: refuse this one, its descriptor closed at once
            with socket.socket(fileno=fd) as refuse:
                refuse.setblocking(False)
                try:
                    refuse.send(pool.busy)
                except OSError:
                    pass
            refused += 1
        fd, address = self._accept()
        conn = _Counted(self.family, self.type, self.proto, fileno=fd)
        conn.pool = pool
        pool.open += 1
        return conn, address


class GuardedH11Protocol(H11Protocol):
    pool: Connections

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.pool.made += 1
        self._timer = None
        self._protocol_error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def remembered():  # uvicorn drops h11's reason; keep it for the 400's detail
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error = exc
                raise
        self.conn.next_event = remembered
        self._wait()

    def idle(self) -> bool:
        """No request in progress (none yet, or its answer sent), and not closing."""
        return (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing()

    def _wait(self) -> None:
        """Now waiting for a request: last in line to be closed for room, closed after idle_timeout."""
        self.pool.waiting[self] = None
        self.pool.waiting.move_to_end(self)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.pool.idle_timeout, self._idle_timeout, self.cycle)

    def _idle_timeout(self, cycle) -> None:
        if self.cycle is cycle and not self.transport.is_closing():  # no request has begun since
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.idle():
            self._wait()

    def connection_lost(self, exc) -> None:
        self.pool.made -= 1
        self.pool.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        error = self._protocol_error
        status = getattr(error, "error_status_hint", 400) or 400
        why = str(error)[:200] if error is not None and str(error) else msg.rstrip(".")
        body = json.dumps({"detail": f"request: not valid HTTP/1.1 ({why})", "field": None},
                          separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), NOSNIFF]
        try:
            for event in (h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES.get(status, b"")),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # an answer had already begun: nothing more can be said on this connection
            pass
        self.transport.close()


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
