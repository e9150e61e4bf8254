"""The connections `serve` keeps open, per client and in all, accepted by its own accept loop on the listening
socket (public asyncio: `loop.add_reader`, `socket.accept`, `loop.connect_accepted_socket`); what each connection
does is server/http_connection.py, how uvicorn's protocol reaches this loop server/uvicorn_sockets.py.

Why not uvicorn's options alone: `limit_concurrency` accepts every connection (its 503 is text/plain and comes once
a request arrives), and asyncio's own accept loop takes up to `backlog` (2048) connections per loop pass, so a
process out of descriptors fails accept() up to 2048 times a pass, then stops accepting for a second. Here:

- at most `max_connections` sockets are open: beyond that the connections that have waited longest without a
  request in progress are closed (an idle flood cannot lock clients out) and accepting goes on at the loop's next
  pass, once their descriptors are free (newcomers wait in the kernel's queue meanwhile); when every connection
  has a request in progress, a newcomer gets a 503 in the one error shape and is closed at once. accept() never
  runs out of descriptors (server/floods.py: `fit_connections` keeps the cap under ulimit -n);
- one client (one peer address) keeps at most `per_client` connections open: beyond that its own longest-idle
  connections make room, and when all of them have a request in progress its newcomer gets a 429 and is closed at
  once, so that one client's reconnect or slow-body flood takes its own share and no one else's (clients behind
  one proxy or NAT share an address: raise --max-connections-per-client there).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import OrderedDict

ROOM_AT_ONCE = 32  # idle connections closed at once when the cap is reached (a flood arrives in bursts)
REFUSED_AT_ONCE = 64  # newcomers refused per loop pass when every connection is busy; then the loop goes on
ACCEPTED_AT_ONCE = 256  # connections accepted per loop pass (asyncio's own loop takes up to its backlog, 2048)
RETRY_SECONDS = 1.0  # after an unexpected accept() error, as asyncio waits


def error_bytes(status: int, reason: str, detail: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer in the one error shape that closes the connection."""
    body = json.dumps({"detail": detail, "field": None}, separators=(",", ":")).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after else ""
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\nx-content-type-options: nosniff\r\n\r\n").encode() + body


class Peer:
    """One client address's connections: open (accepted, not yet lost), closing (closed to make room, not yet
    lost), and those waiting without a request, longest waiting first."""

    def __init__(self):
        self.open = self.closing = 0
        self.waiting: OrderedDict = OrderedDict()


def peer_key(address) -> str:
    """The client of an accepted connection: its IP address ('' for a Unix socket)."""
    return address[0] if isinstance(address, tuple) and address else ""


class Connections:
    """The open connections of one server, in all and per client address; each is an `HttpConnection`
    (server/http_connection.py), which reports here when it waits for a request, when one begins, and when it is
    lost."""

    def __init__(self, max_connections: int, idle_timeout: float, per_client: int | None = None,
                 keep_alive: float = 5.0):
        self.max, self.idle_timeout = max_connections, idle_timeout
        self.keep_alive = min(keep_alive, idle_timeout)  # a connection silent this long after an answer is closed
        self.per_client = min(per_client or max_connections, max_connections)
        self.open = 0  # accepted sockets not yet closed
        self.closing = 0  # of those, closed to make room, their descriptors not yet free
        self.waiting: OrderedDict = OrderedDict()  # connections without a request in progress, longest waiting first
        self.peers: dict[str, Peer] = {}
        self.accepting: AcceptLoop | None = None  # the accept loop serving these (server/uvicorn_sockets.py)
        self.busy = error_bytes(503, "Service Unavailable", f"busy: {max_connections} connections are open "
                                "with requests in progress; retry", retry_after=1)

    def crowded(self, key: str) -> bytes:
        shown = json.dumps(key, ensure_ascii=True)[1:-1]
        return error_bytes(429, "Too Many Requests", f"busy: {self.per_client} connections from your address "
                           f"({shown}) are open with requests in progress; retry (--max-connections-per-client)",
                           retry_after=1)

    def make_room(self, peer: Peer | None = None, count: int = ROOM_AT_ONCE) -> bool:
        """Close up to `count` connections that wait without a request (of one client, or of all), longest waiting
        first."""
        waiting = self.waiting if peer is None else peer.waiting
        closed = 0
        while waiting and closed < count:
            oldest, _ = waiting.popitem(last=False)
            if oldest.idle():
                oldest.evict()
                closed += 1
        return closed > 0

    def admit(self, key: str) -> bool:
        """Whether a connection just accepted from `key` may stay: under its client's cap (those closed to make room
        not counted), or once the client's longest-idle connections make room. Accepting goes on meanwhile, so
        that one client's flood does not keep the others' connections waiting behind its own in the kernel's
        queue."""
        peer = self.peers.get(key)
        live = 0 if peer is None else peer.open - peer.closing  # this one included: 1 more
        return live < self.per_client or self.make_room(peer, min(ROOM_AT_ONCE, live - self.per_client + 1))

    def opened(self, key: str, connection) -> Peer:
        """Count a connection just admitted; it waits for a request from now on."""
        peer = self.peers.setdefault(key, Peer())
        self.open += 1
        peer.open += 1
        for waiting in (self.waiting, peer.waiting):
            waiting[connection] = None
        return peer

    def waits(self, connection, peer: Peer) -> None:
        """`connection` has no request in progress: last in line to be closed for room."""
        for waiting in (self.waiting, peer.waiting):
            waiting[connection] = None
            waiting.move_to_end(connection)

    def works(self, connection, peer: Peer) -> None:
        """A request began on `connection`: it is not closed for room until it is answered."""
        self.waiting.pop(connection, None)
        peer.waiting.pop(connection, None)

    def evicted(self, peer: Peer) -> None:
        self.closing += 1
        peer.closing += 1

    def lost(self, connection, peer: Peer, key: str, evicted: bool) -> None:
        """`connection` is closed: its descriptor is free once this returns."""
        self.works(connection, peer)
        self.open -= 1
        peer.open -= 1
        if evicted:
            self.closing -= 1
            peer.closing -= 1
        if peer.open <= 0:
            self.peers.pop(key, None)


def refuse(conn: socket.socket, answer: bytes) -> None:
    """Answer a connection accepted only to be refused, and close it at once: the answer, the end of writing, then
    what the client has sent so far read and dropped (without waiting), so that the close is a FIN the client reads
    after the answer rather than a reset for unread bytes."""
    with conn:
        conn.setblocking(False)
        try:
            conn.send(answer)
            conn.shutdown(socket.SHUT_WR)
            conn.recv(65536)
        except OSError:
            pass


class AcceptLoop(asyncio.AbstractServer):
    """Accepts connections on a listening socket within the caps of `pool`; each accepted connection is served by
    `connection(key)` (an asyncio protocol) through `loop.connect_accepted_socket`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, pool: Connections, connection):
        self.loop, self.sock, self.pool, self.connection = loop, sock, pool, connection
        self.serving = False
        sock.setblocking(False)
        self.start()

    def start(self) -> None:
        if not self.serving and self.sock.fileno() != -1:
            self.serving = True
            self.loop.add_reader(self.sock.fileno(), self.accept)

    def close(self) -> None:
        if self.serving:
            self.serving = False
            self.loop.remove_reader(self.sock.fileno())

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def is_serving(self) -> bool:
        return self.serving

    async def start_serving(self) -> None:
        self.start()

    async def serve_forever(self) -> None:
        raise NotImplementedError("uvicorn runs the loop")

    async def wait_closed(self) -> None:
        return None

    def _accept_one(self) -> tuple[socket.socket, object] | None:
        try:
            return self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as exc:  # as asyncio does: say so (once a minute: server/floods.py), stop a while, go on
            self.loop.call_exception_handler({"message": "socket.accept() out of system resource", "exception": exc})
            self.close()
            self.loop.call_later(RETRY_SECONDS, self.start)
            return None

    def accept(self) -> None:
        """One loop pass's accepting; the listening socket stays readable, so the next pass goes on."""
        pool, refused = self.pool, 0
        for _ in range(ACCEPTED_AT_ONCE):
            if pool.open >= pool.max:
                # descriptors closed to make room are free on a next pass: none closed twice over meanwhile, and
                # never the newest half of those waiting (a client's connection just accepted, its head to come)
                if pool.closing or pool.make_room(count=max(1, min(ROOM_AT_ONCE, len(pool.waiting) // 2))):
                    return
                accepted = self._accept_one()  # every connection is busy: refuse this one
                if accepted is None:
                    return
                refuse(accepted[0], pool.busy)
                refused += 1
            else:
                accepted = self._accept_one()
                if accepted is None:
                    return
                conn, address = accepted
                key = peer_key(address)
                if pool.admit(key):
                    self.serve(conn, key)
                    continue
                refuse(conn, pool.crowded(key))  # its client's connections all have requests in progress
                refused += 1
            if refused >= REFUSED_AT_ONCE:
                return

    def serve(self, conn: socket.socket, key: str) -> None:
        connection = self.connection(key)
        started = self.loop.create_task(self.loop.connect_accepted_socket(lambda: connection, conn))
        started.add_done_callback(lambda task: task.cancelled() or task.exception() is None
                                  or connection.not_started(conn))
