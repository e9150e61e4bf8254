"""One connection of `serve`: an asyncio protocol in front of uvicorn's own (composed, not subclassed: it is made by
uvicorn's protocol factory and handed the same transport) that reads each request head itself with h11 before
uvicorn sees a byte of it. So that:

- a connection that has not sent a whole request head within `idle_timeout` seconds of opening (or of its last
  answer) is closed, and one silent for `keep_alive` seconds after an answer too (uvicorn's keep-alive timer,
  which sees no byte of a head still incomplete, is set longer than both);
- a malformed request head is a JSON error in the one shape, naming what h11 found (the status is h11's hint:
  400, or 431 for a head over MAX_HEAD bytes), instead of uvicorn's text/plain "Invalid HTTP request received.";
  a request whose framing is ambiguous (server/framing.py) is a 400 too, and every such answer closes the
  connection: no byte after that head reaches uvicorn;
- the connection counts as busy from its request head until the app has answered it (`track_requests`, an ASGI
  wrapper around the app, says when), and as idle otherwise: only idle ones are closed to make room
  (server/connections.py).

The app's request and this connection are matched by a context variable: uvicorn starts the app's task while this
protocol hands it the request head, and a task copies the context it was started in (PEP 567).
"""

from __future__ import annotations

import asyncio
import contextvars
from http import HTTPStatus

import h11

from qlora_sentiment.server.connections import error_bytes
from qlora_sentiment.server.framing import AmbiguousFraming, bad_request, framing_problem

MAX_HEAD = 16 * 1024  # bytes of a request head (h11's default; uvicorn's h11_max_incomplete_event_size is set alike)

_current: contextvars.ContextVar[HttpConnection | None] = contextvars.ContextVar("qlora_connection", default=None)


class HttpConnection:
    """An asyncio protocol: what the transport delivers is read here first and handed to `inner` (uvicorn's
    protocol) a whole request head at a time, then its body as it comes."""

    def __init__(self, pool, key: str, make_inner):
        self.pool, self.key, self.make_inner = pool, key, make_inner
        self.peer = pool.opened(key, self)
        self.transport = self.inner = None
        self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.pending = bytearray()  # received, not yet handed to uvicorn: a head still incomplete
        self.in_body = False  # the head is handed over; its body is being read
        self.ignoring = False  # after a request that ends the connection, or a refused head
        self.requests = 0  # requests handed to uvicorn whose app call has not returned
        self.answering = False  # the app has started the answer to the request in progress
        self.refusal: bytes | None = None  # a refused head's answer, sent once the requests before it are answered
        self.evicted = False
        self.timers: list = []

    # --- the asyncio protocol ---

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.evicted:  # closed to make room before it started
            transport.close()
            return
        self.inner = self.make_inner()
        self.inner.connection_made(transport)
        self._wait(answered=False)

    def data_received(self, data: bytes) -> None:
        if self.ignoring:
            return
        self._cancel(keep_alive_only=True)
        token = _current.set(self)  # the app task uvicorn starts while reading this is this connection's
        try:
            self._read(data)
        finally:
            _current.reset(token)

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self._cancel()
        self.pool.lost(self, self.peer, self.key, self.evicted)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def not_started(self, sock) -> None:
        """connect_accepted_socket failed: the socket is closed and no longer counted."""
        sock.close()
        self.pool.lost(self, self.peer, self.key, self.evicted)

    # --- reading requests ---

    def _read(self, data: bytes) -> None:
        self.pending += data
        self.parser.receive_data(data)
        while not self.ignoring:
            try:
                event = self.parser.next_event()
            except h11.RemoteProtocolError as exc:
                return self._refuse(exc)
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if self.in_body:  # all of it is body: uvicorn reads it as it comes
                    self._hand_over(len(self.pending))
                return
            if type(event) is h11.Request:
                problem = framing_problem(event)
                if problem:
                    return self._refuse(AmbiguousFraming(problem))
                self.in_body = True
                self._begin()
            elif type(event) is h11.EndOfMessage:
                rest = bytes(self.parser.trailing_data[0])
                self._hand_over(len(self.pending) - len(rest))
                self.in_body = False
                if self.parser.their_state is h11.MUST_CLOSE:  # uvicorn closes once it has answered
                    self.ignoring = True
                    return
                self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
                if rest:  # (h11 reads b"" as the end of the connection)
                    self.parser.receive_data(rest)

    def _hand_over(self, count: int) -> None:
        if count > 0:
            chunk = bytes(self.pending[:count])
            del self.pending[:count]
            self.inner.data_received(chunk)

    def _begin(self) -> None:
        """A whole request head: busy until the app has answered it."""
        self.requests += 1
        self._cancel()
        self.pool.works(self, self.peer)

    def _refuse(self, error: h11.RemoteProtocolError) -> None:
        """A 400 (431) in the one shape for a head h11 cannot read or whose framing is ambiguous, then the close;
        after the answers to the requests before it. A body that turns out malformed ends the connection, with
        that answer if its request's own answer has not begun."""
        self.ignoring = True
        status, detail = bad_request(error)
        answer = error_bytes(status, HTTPStatus(status).phrase, detail)
        if self.in_body:
            if self.requests == 1 and not self.answering:
                self.transport.write(answer)
            self.transport.close()
        elif self.requests:
            self.refusal = answer
        else:
            self.transport.write(answer)
            self.transport.close()

    # --- idle and busy ---

    def idle(self) -> bool:
        """No request in progress (none yet, or its answer given), and not closing."""
        return not self.requests and not (self.transport is not None and self.transport.is_closing())

    def done(self) -> None:
        """The app has answered one request of this connection (track_requests)."""
        self.requests -= 1
        self.answering = False
        if self.requests or self.transport.is_closing():
            return
        if self.refusal is not None:
            self.transport.write(self.refusal)
            self.transport.close()
        else:
            self._wait(answered=True)

    def evict(self) -> None:
        """Closed to make room (counted as closing until lost)."""
        self.evicted = True
        self.pool.evicted(self.peer)
        if self.transport is not None:
            self.transport.close()

    def _wait(self, answered: bool) -> None:
        """Waiting for a request: last in line to be closed for room, closed after idle_timeout without a whole
        head (and after keep_alive without a byte, once it has had an answer)."""
        self.pool.waits(self, self.peer)
        call_later = asyncio.get_running_loop().call_later
        self.timers = [call_later(self.pool.idle_timeout, self._close_idle)]
        if answered:
            self.timers.append(call_later(self.pool.keep_alive, self._close_idle))

    def _cancel(self, keep_alive_only: bool = False) -> None:
        for timer in self.timers[1:] if keep_alive_only else self.timers:
            timer.cancel()
        self.timers = self.timers[:1] if keep_alive_only else []

    def _close_idle(self) -> None:
        if self.idle():
            self.transport.close()


def track_requests(app):
    """An ASGI wrapper around the whole app: tells each request's connection when its answer begins and when the
    app has answered it."""
    async def tracked(scope, receive, send):
        connection = _current.get()
        if connection is None or scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                connection.answering = True
            await send(message)

        try:
            await app(scope, receive, send_tracked)
        finally:
            connection.done()
    return tracked
