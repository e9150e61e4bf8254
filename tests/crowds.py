"""Helpers for the web API's crowd tests (test_serving_crowds.py, and the door's catalogue rows in
test_serving_door.py): extra `serve` processes of the tiny trained model, shared by the whole session; sockets from
another loopback address (Linux routes all of 127/8 to lo, so 127.0.0.2 is another client to the server); and
floods of such sockets run in a process of their own, so that they compete with the server for the CPU as a
hostile client would, and not with the test for its GIL."""

from __future__ import annotations

import atexit
import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from helpers import CLI, free_port, wait_until

OTHER = "127.0.0.2"  # the flooding client; real requests come from 127.0.0.1
# a server that a test can crowd in seconds: 100 connections in all, 20 per client; a request (its body too) may take
# 60 s, so that a connection kept busy stays busy while a test crowds it (with the default 10 s body timeout, the
# slow-body flood's connections, and crowded_answer's own, were answered 408 and closed about as fast as a loaded
# machine's tries took their places: measured, 40 tries admitted and none refused)
CROWD = ("--max-connections", "100", "--max-connections-per-client", "20", "--request-timeout", "60",
         "--body-timeout", "60")
GOOD = b'{"text": "the film was great"}'
_SERVERS: dict[tuple, SimpleNamespace] = {}


def serve(trained, *flags: str) -> SimpleNamespace:
    """`serve` of the tiny adapter with these flags (url, port, proc): started once per test session."""
    key = (str(trained), *flags)
    if key not in _SERVERS or _SERVERS[key].proc.poll() is not None:
        port = free_port()
        proc = subprocess.Popen([CLI, "serve", "--model", str(trained / "adapter"), "--base", str(trained / "base"),
                                 "--threads", "1", "--port", str(port), *flags], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_until(url, "/ready", proc)
        _SERVERS[key] = SimpleNamespace(url=url, port=port, proc=proc)
    return _SERVERS[key]


@atexit.register
def _stop_servers() -> None:
    for running in _SERVERS.values():
        running.proc.terminate()
    for running in _SERVERS.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.proc.wait(timeout=30)


def connect_from(source: str, port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def answer_of(sock: socket.socket) -> tuple[int, dict, dict] | tuple[()]:
    """(status, headers, JSON body) of the one answer a server sends before closing the connection; () when it
    closes the connection without one, or keeps it open (let in, and waiting for a request or its body)."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (ConnectionResetError, TimeoutError):  # an answer read before a reset (bytes the server left unread) counts
        if not reply.endswith(b"}"):
            reply = b""
    if not reply:
        return ()
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.lower().split(": ", 1) for line in lines[1:]), json.loads(body)


def busy_head(length: int = 1000) -> bytes:
    """A request head whose body is still to come: its connection has a request in progress."""
    return (b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % length)


def client_crowded(server) -> tuple[int, dict, dict]:
    """A client whose --max-connections-per-client (20 on CROWD's server) connections all have requests in
    progress opens one more: a 429, and closed at once (the floods: test_serving_crowds.py)."""
    crowd = serve(server.trained, *CROWD)
    busy = [connect_from(OTHER, crowd.port) for _ in range(20)]
    try:
        for sock in busy:
            sock.sendall(busy_head())
        time.sleep(1)  # their requests have begun
        with connect_from(OTHER, crowd.port) as one_more:
            return answer_of(one_more)
    finally:
        for sock in busy:
            sock.close()


def crowded_answer(port: int, tries: int = 40) -> tuple[int, dict, dict] | tuple[()]:
    """The answer to one more connection from OTHER once its flood holds still (`flooding`'s pause: while it
    reconnects, its newest connections, not yet busy, make room for one another and for this one, which races
    them). Each try sends a request head whose body is still to come, so that one let in (in the place of one of
    the flood's that waits without a request) holds it, busy, until the end; the first answer within half a
    second is the refusal, whichever try it answers (a loaded server answers some late); () if none came."""
    held = []
    try:
        for _ in range(tries):
            sock = connect_from(OTHER, port, timeout=0.5)
            held.append(sock)
            try:
                sock.sendall(busy_head())
            except OSError:  # refused and closed before the head went out: its answer is still to be read
                pass
            for answered in select.select(held, [], [], 0.5)[0]:
                if answer := answer_of(answered):
                    return answer
                held.remove(answered)  # closed without an answer (made room for another): done with
                answered.close()
        return ()
    finally:
        for sock in held:
            sock.close()


def too_costly(server=None) -> tuple[int, dict, dict]:
    """A request that would take the model longer than the request timeout alone, refused up front (413) naming
    the estimate and the timeout. The same on any machine: an in-process server (test_reliability.running) of a
    scripted model whose pass sleeps 0.1 ms per padded token, never less, with 0.5 s per request; three full
    passes (8 texts of 128 tokens, ~0.1 s each) measure the pace, then 64 such texts (8 passes: at least 0.82 s)
    are refused before any of them reaches the model. `server` is not used (DOOR_CASES passes its server)."""
    from test_reliability import HEAVY, ScriptedModel, running

    model = ScriptedModel(seconds_per_token=0.0001)
    with running(model, max_batch=64, max_batch_tokens=1024, request_timeout=0.5) as url:
        for _ in range(3):
            assert httpx.post(f"{url}/predict", json={"texts": HEAVY["texts"][:8]}, timeout=30).status_code == 200
        passes = len(model.passes)
        response = httpx.post(f"{url}/predict", json=HEAVY, timeout=30)
        assert len(model.passes) == passes, "its texts reached the model"
        assert httpx.post(f"{url}/predict", json={"text": "a fine film"}, timeout=30).status_code == 200
    return response.status_code, dict(response.headers), response.json()


SMUGGLED = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # after a refused head: must never be answered


def framed(*headers: bytes, body: bytes = GOOD, then: bytes = SMUGGLED) -> bytes:
    """A POST /predict with these framing headers, its body, and a request after it on the same connection."""
    return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body + then)


CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD)

FLOOD = r'''
import selectors, socket, sys, time
port, count, mode, source = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
head, report = bytes.fromhex(sys.argv[5]), sys.argv[6]
selector = selectors.DefaultSelector()
opened = 0

def connect():
    global opened
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    except OSError:
        sock.close()
        time.sleep(0.01)
        return
    selector.register(sock, selectors.EVENT_READ, [0.0, False])
    opened += 1

for _ in range(count):
    connect()
print("ready", flush=True)
next_byte = time.time() + 1
while True:
    for key, _ in selector.select(0.2):  # the server closed it (or answered, then closed): reconnect at once
        try:
            data = key.fileobj.recv(65536)
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
            connect()
    if mode == "slow":  # the head once, then a byte of the body every second
        now = time.time()
        for key in list(selector.get_map().values()):
            state = key.data
            if not state[1] or now >= next_byte:
                try:
                    key.fileobj.send(b"{" if state[1] else head)
                    state[1] = True
                except OSError:
                    pass
    if time.time() >= next_byte:
        next_byte = time.time() + 1
        with open(report, "w") as out:
            out.write(str(opened))
'''


@contextlib.contextmanager
def flooding(port: int, count: int, mode: str = "idle"):
    """`count` sockets from OTHER that reconnect as soon as the server closes them; `mode` idle (they send nothing)
    or slow (a request head with a 1,000-byte body, then a byte of it every second). Yields a function that says
    how many connections the flood has opened so far (counted once a second), whose `pause()` stops the flood
    where it is (SIGSTOP)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "opened"
        proc = subprocess.Popen([sys.executable, "-c", FLOOD, str(port), str(count), mode, OTHER, busy_head().hex(),
                                 str(report)], stdout=subprocess.PIPE, text=True)
        def opened() -> int:
            return int(report.read_text() or 0) if report.exists() else 0

        def pause() -> None:  # the flood holds still: its sockets stay open, and nothing more is sent or opened
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.5)  # the server has read what was sent

        opened.pause = pause
        try:
            assert proc.stdout.readline().strip() == "ready"
            yield opened
        finally:
            proc.kill()
            proc.wait()


def overloaded(server=None):
    """serve-overloaded: the first immediate refusal of a burst beyond capacity (tests/test_serving_overload.py; its
    own scripted server, not `server`)."""
    from test_serving_overload import overloaded as first_refusal  # that module imports the scripted model

    return first_refusal(server)
