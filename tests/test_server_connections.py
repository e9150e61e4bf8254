"""serve's connections (server/connections.py, http_connection.py, uvicorn_sockets.py) on uvicorn with a tiny ASGI
app, no model: uvicorn hands its protocol factory to serve's event loop (the one behaviour of uvicorn relied on
beyond its documented options: this test fails first if a release changes it), every request head is read in
front of uvicorn, and the caps hold. The same on the real server, under floods: test_serving_door.py,
test_serving_crowds.py."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import pytest
import uvicorn

from qlora_sentiment.server.connections import AcceptLoop, Connections
from qlora_sentiment.server.http_connection import MAX_HEAD, track_requests
from qlora_sentiment.server.run import bind
from qlora_sentiment.server.uvicorn_sockets import serve_on


class App:
    """Answers `ok PATH BODY-LENGTH`; /slow waits until `gate` is set."""

    def __init__(self):
        self.gate = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        while scope["path"] == "/slow" and not self.gate.is_set():
            await asyncio.sleep(0.01)
        answer = b"ok %s %d" % (scope["path"].encode(), len(body))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server():
    app, sock = App(), bind("127.0.0.1", 0)
    pool = Connections(10, 1.0, 3)
    uvicorn_server = uvicorn.Server(uvicorn.Config(track_requests(app), log_level="warning", lifespan="on",
                                                   ws="none", http="h11", h11_max_incomplete_event_size=MAX_HEAD,
                                                   timeout_keep_alive=3))

    thread = threading.Thread(target=serve_on, args=(uvicorn_server, sock, pool), daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not uvicorn_server.started and time.time() < deadline:
        time.sleep(0.01)
    yield app, sock.getsockname()[1], pool
    app.gate.set()
    uvicorn_server.should_exit = True
    thread.join(10)


def exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_uvicorn_hands_its_protocol_factory_to_the_serving_loop(server):
    app, port, pool = server
    assert isinstance(pool.accepting, AcceptLoop), pool.accepting
    reply = exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"ok /a 0"), reply
    reply = exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")  # read in front of uvicorn
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head, reply
    assert json.loads(body)["detail"].startswith("request: not valid HTTP/1.1 (illegal header line"), body


def test_pipelined_requests_keep_their_order_and_a_bad_head_waits_its_turn(server):
    _, port, _ = server
    reply = exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
                           b"abcGET /c HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\nGET /never HTTP/1.1\r\n\r\n")
    assert re.findall(rb"HTTP/1\.1 (\d{3}) [A-Z]", reply) == [b"200", b"200", b"400"], reply
    assert reply.index(b"ok /a 0") < reply.index(b"ok /b 3") < reply.index(b"400 Bad Request")
    assert b"/never" not in reply


def test_a_head_not_finished_within_the_idle_timeout_is_closed(server):
    _, port, pool = server
    started = time.time()
    assert exchange(port, b"GET /partial HTTP/1.1\r\nHost: x\r\n") == b""
    assert 0.9 < time.time() - started < 3
    deadline = time.time() + 5
    while pool.open and time.time() < deadline:
        time.sleep(0.01)
    assert pool.open == 0 and not pool.peers


def test_a_client_with_every_connection_busy_gets_a_429(server):
    app, port, pool = server
    busy = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        for sock in busy:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        head, _, body = exchange(port, b"").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 ") and b"retry-after: 1" in head, head
        assert "3 connections from your address (127.0.0.1)" in json.loads(body)["detail"]
        app.gate.set()
        for sock in busy:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in busy:
            sock.close()
