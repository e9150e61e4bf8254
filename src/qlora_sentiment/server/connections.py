"""Connections for `serve`: uvicorn's h11 protocol with the bounds uvicorn lacks, per client and in all (the file
descriptors they need, and logs that a flood cannot fill: server/floods.py).

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
- one client (one peer address) keeps at most `per_client` connections open: beyond that its own longest-idle
  connections make room, and when all of them have a request in progress its newcomer gets a 429 and is closed
  at once, so that one client's reconnect or slow-body flood takes its own share and no one else's (clients behind
  one proxy or NAT share an address: raise --max-connections-per-client there);
- a connection that has not sent a whole request head within `idle_timeout` seconds of opening (or of its last
  answer) is closed;
- uvicorn's own 400 for a malformed request ("Invalid HTTP request received.", text/plain) is a JSON error in the
  one shape, naming what h11 found (the status is h11's hint: 400, or 431 for a head over 16 KiB); a request
  whose framing is ambiguous (server/framing.py) is a 400 too, and every such answer closes the connection.
"""

from __future__ import annotations

import json
import socket
from collections import OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from qlora_sentiment.server.framing import AmbiguousFraming, bad_request, framing_problem
from qlora_sentiment.server.floods import OncePerMinute, fit_connections, quiet_floods  # noqa: F401 (were here)
from qlora_sentiment.server.middleware import NOSNIFF

ROOM_AT_ONCE = 32  # idle connections closed at once when the cap is reached (a flood arrives in bursts)
REFUSED_AT_ONCE = 64  # newcomers refused per accept() call when every connection is busy; then the loop goes on


def _error_bytes(status: int, reason: str, detail: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"detail": detail, "field": None}, separators=(",", ":")).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after else ""
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\nx-content-type-options: nosniff\r\n\r\n").encode() + body


class _Peer:
    """One client address's connections: sockets open, protocols started, those closed to make room whose
    descriptors are not closed yet, and those waiting without a request."""

    def __init__(self):
        self.open = self.made = self.closing = 0
        self.waiting: OrderedDict = OrderedDict()


def peer_key(address) -> str:
    """The client of an accepted connection: its IP address ('' for a Unix socket)."""
    return address[0] if isinstance(address, tuple) and address else ""


class Connections:
    """The open connections of one server: how many sockets are open, and which wait without a request; in all and
    per client address."""

    def __init__(self, max_connections: int, idle_timeout: float, per_client: int | None = None):
        self.max, self.idle_timeout = max_connections, idle_timeout
        self.per_client = min(per_client or max_connections, max_connections)
        self.open = 0  # accepted sockets not yet closed
        self.made = 0  # of those, connections whose protocol has started (asyncio starts it a loop pass later)
        self.waiting: OrderedDict = OrderedDict()  # protocols without a request in progress, longest waiting first
        self.peers: dict[str, _Peer] = {}
        self.clients: dict[int, str] = {}  # accepted socket's descriptor -> its client
        self.pause = False  # accept no more this loop pass
        self.busy = _error_bytes(503, "Service Unavailable", f"busy: {max_connections} connections are open "
                                 "with requests in progress; retry", retry_after=1)

    def crowded(self, key: str) -> bytes:
        shown = json.dumps(key, ensure_ascii=True)[1:-1]
        return _error_bytes(429, "Too Many Requests", f"busy: {self.per_client} connections from your address "
                            f"({shown}) are open with requests in progress; retry (--max-connections-per-client)",
                            retry_after=1)

    def protocol(self) -> type:
        """The protocol class for uvicorn.Config(http=...)."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"pool": self})

    def listener(self, sock: socket.socket) -> socket.socket:
        """`sock` (listening) as a socket whose accept() keeps to the cap."""
        listener = _Listener(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.pool = self
        return listener

    def make_room(self, peer: _Peer | None = None, count: int = ROOM_AT_ONCE) -> bool:
        """Close up to `count` connections that wait without a request (of one client, or of all), longest waiting
        first."""
        waiting = self.waiting if peer is None else peer.waiting
        closed = 0
        while waiting and closed < count:
            oldest, _ = waiting.popitem(last=False)
            if oldest.idle():
                oldest.evict()  # its descriptor is closed at the start of the loop's next pass
                closed += 1
        return closed > 0

    def admit(self, key: str) -> bool:
        """Whether a connection just accepted from `key` may stay: under its client's cap (those closed to make room
        not counted), or once the client's longest-idle connection makes room, or (once per loop pass) while some
        of its connections have not started yet. Accepting goes on meanwhile, so that one client's flood does not
        keep the others' connections waiting behind its own in the kernel's queue."""
        peer = self.peers.get(key)
        live = 0 if peer is None else peer.open - peer.closing  # this one included: 1 more
        if live < self.per_client or self.make_room(peer, min(ROOM_AT_ONCE, live - self.per_client + 1)):
            return True
        if peer.made < peer.open:  # their state is not known yet: let this one in, look again next pass
            self.pause = True
            return True
        return False


def _refuse(fd: int, answer: bytes) -> None:
    """Answer a connection accepted only to be refused, and close it at once: the answer, the end of writing, then
    what the client has sent so far read and dropped (without waiting), so that the close is a FIN the client reads
    after the answer rather than a reset for unread bytes."""
    with socket.socket(fileno=fd) as refuse:
        refuse.setblocking(False)
        try:
            refuse.send(answer)
            refuse.shutdown(socket.SHUT_WR)
            refuse.recv(65536)
        except OSError:
            pass


class _Counted(socket.socket):
    """An accepted connection, counted open until its descriptor is closed."""
    pool: Connections | None = None
    peer: str = ""

    def _real_close(self, *args):  # what close() calls once the descriptor is to be closed
        if self.pool is not None and self.fileno() != -1:
            self.pool.open -= 1
            self.pool.clients.pop(self.fileno(), None)
            peer = self.pool.peers.get(self.peer)
            if peer is not None:
                peer.open -= 1
                if peer.open <= 0:
                    del self.pool.peers[self.peer]
            self.pool = None
        super()._real_close(*args)


class _Listener(socket.socket):
    pool: Connections

    def accept(self):
        pool = self.pool
        refused = 0
        while True:
            if pool.pause:
                pool.pause = False
                raise BlockingIOError  # asyncio stops this pass, and accepts again on the next one
            while pool.open >= pool.max:
                if pool.make_room() or pool.made < pool.open or refused >= REFUSED_AT_ONCE:
                    raise BlockingIOError
                fd, _ = self._accept()  # every connection is busy: refuse this one, its descriptor closed at once
                _refuse(fd, pool.busy)
                refused += 1
            fd, address = self._accept()
            key = peer_key(address)
            if pool.admit(key):
                break
            _refuse(fd, pool.crowded(key))  # its client's connections all have requests in progress
            refused += 1
            if refused >= REFUSED_AT_ONCE:
                raise BlockingIOError
        conn = _Counted(self.family, self.type, self.proto, fileno=fd)
        conn.pool, conn.peer = pool, key
        pool.open += 1
        pool.peers.setdefault(key, _Peer()).open += 1
        pool.clients[fd] = key
        return conn, address


class GuardedH11Protocol(H11Protocol):
    pool: Connections

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.pool.made += 1
        sock = transport.get_extra_info("socket")
        self._peer = self.pool.peers.get(self.pool.clients.get(sock.fileno() if sock is not None else -1, ""))
        if self._peer is not None:
            self._peer.made += 1
        self._timer = None
        self._evicted = False
        self._protocol_error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def remembered():  # uvicorn drops h11's reason; keep it for the 400's detail
            try:
                event = next_event()
                problem = framing_problem(event) if type(event) is h11.Request else None
                if problem:
                    raise AmbiguousFraming(problem)  # answered 400, the connection closed
                return event
            except h11.RemoteProtocolError as exc:
                self._protocol_error = exc
                raise
        self.conn.next_event = remembered
        self._wait()

    def evict(self) -> None:
        """Closed to make room (counted as closing by its client until its descriptor is closed)."""
        self._evicted = True
        if self._peer is not None:
            self._peer.closing += 1
        self.transport.close()

    def idle(self) -> bool:
        """No request in progress (none yet, or its answer sent), and not closing."""
        return (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing()

    def _wait(self) -> None:
        """Now waiting for a request: last in line to be closed for room, closed after idle_timeout."""
        for waiting in (self.pool.waiting, *((self._peer.waiting,) if self._peer is not None else ())):
            waiting[self] = None
            waiting.move_to_end(self)
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
        if self._peer is not None:
            self._peer.made -= 1
            self._peer.closing -= self._evicted  # its descriptor is closed right after this
            self._peer.waiting.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        status, detail = bad_request(self._protocol_error, msg)
        body = json.dumps({"detail": detail, "field": None}, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), NOSNIFF]
        try:
            for event in (h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES.get(status, b"")),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # an answer had already begun: nothing more can be said on this connection
            pass
        self.transport.close()
