"""The web API against hostile clients (issue 42): message framing a proxy could read another way (RFC 9112
section 6.3), one client's reconnect or slow-body flood beside another client's requests, texts that clean into
far more characters than they send, requests that would outlast their timeout alone, Host headers with a
userinfo, HEAD. Real `qlora-sentiment serve` processes of the tiny trained model (crowds.py: 100 connections, 20
per client), floods from 127.0.0.2 in a process of their own, real requests from 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import crowds
from crowds import CHUNKED, GOOD, framed

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 as another client: Linux routes 127/8")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def crowd(trained):
    return crowds.serve(trained, *crowds.CROWD)


def exchange(port: int, data: bytes) -> bytes:
    """Everything the server sends back to `data` until it closes the connection."""
    with crowds.connect_from("127.0.0.1", port) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("headers,body,why", [
    ((b"Content-Length: %d" % len(CHUNKED), b"Transfer-Encoding: chunked"), CHUNKED,
     "both Content-Length and Transfer-Encoding"),
    ((b"Transfer-Encoding: chunked", b"Content-Length: 3"), CHUNKED, "both Content-Length and Transfer-Encoding"),
    ((b"Content-Length: 30", b"Content-Length: 31"), GOOD, "Content-Length values differ"),
    ((b"Content-Length: 30, 29",), GOOD, "Content-Length values differ"),
    ((b"Transfer-Encoding: chunked, gzip",), CHUNKED, "Transfer-Encoding other than chunked alone"),
    ((b"Transfer-Encoding: gzip, chunked",), CHUNKED, "Transfer-Encoding other than chunked alone"),
    ((b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), CHUNKED, "Transfer-Encoding given more than once"),
])
def test_an_ambiguous_framing_is_a_400_and_the_connection_closes(crowd, headers, body, why):
    """The request after it on the same connection (a GET /health) is never read: one answer, then the close."""
    reply = exchange(crowd.port, framed(*headers, body=body))
    assert reply.count(b"HTTP/1.1 ") == 1, reply
    head, _, answer = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"\r\nconnection: close" in head.lower(), head
    assert json.loads(answer) == {"detail": f"request: ambiguous framing ({why}); send one Content-Length, or "
                                            "Transfer-Encoding: chunked alone", "field": None}


def test_clear_framings_are_read_and_keep_the_connection(crowd):
    """Chunked alone, one length given twice alike, HTTP/1.0 with a length: answered, and the next request on the
    connection too; Transfer-Encoding in HTTP/1.0 is refused."""
    last = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for headers, body in (((b"Transfer-Encoding: chunked",), CHUNKED), ((b"Content-Length: %d, %d" % (len(GOOD), len(GOOD)),), GOOD)):
        reply = exchange(crowd.port, framed(*headers, body=body, then=last))
        assert reply.startswith(b"HTTP/1.1 200 ") and reply.count(b"HTTP/1.1 200 ") == 2, reply
    old = framed(b"Transfer-Encoding: chunked", body=CHUNKED).replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    reply = exchange(crowd.port, old)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"Transfer-Encoding in an HTTP/1.0 request" in reply, reply


def test_head_is_answered_as_get_without_a_body(crowd):
    """Over a raw socket (httpx never reads a HEAD answer's body, so it cannot see one): GET's headers, its
    Content-Length included, and not a byte of body, so that the next request on the connection gets its own
    answer (a body sent after the head would be read as the start of that answer)."""
    then = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for path in ("/health", "/ready", "/info", "/openapi.json", "/docs"):
        got = httpx.get(f"{crowd.url}{path}", timeout=10)
        reply = exchange(crowd.port, b"HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n%s" % (path.encode(), then))
        head, _, rest = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        assert lines[0].startswith("HTTP/1.1 200 ") and got.status_code == 200, (path, lines[0])
        assert headers["content-type"] == got.headers["content-type"] and headers["x-content-type-options"] == "nosniff"
        assert int(headers["content-length"]) > 0 and "connection" not in headers, (path, headers)
        if path != "/health":  # its counters may change between two requests
            assert headers["content-length"] == got.headers["content-length"], path
        assert rest.startswith(b"HTTP/1.1 200 ") and rest.count(b"HTTP/1.1 ") == 1, (path, rest[:80])  # no body
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["status"] == "ok"
    assert httpx.head(f"{crowd.url}/predict", timeout=10).status_code == 405  # POST only, as GET is
    assert httpx.head(f"{crowd.url}/nowhere", timeout=10).status_code == 404


@pytest.mark.parametrize("header,host", [
    ("127.0.0.1:8000", "127.0.0.1"), ("LOCALHOST.", "localhost"), ("[0:0::1]:80", "[::1]"), ("", ""),
    ("127.0.0.1:1@evil.example", None), ("evil.example#127.0.0.1", None), ("127.0.0.1/x", None),
    ("127.0.0.1, evil.example", None), ("127.0.0.1:99999999", None), ("[evil]", None), ("a b", None),
])
def test_a_host_header_is_a_host_and_an_optional_port(header, host):
    from qlora_sentiment.server.middleware import request_host

    assert request_host(header) == host


def _answered(url: str, count: int, gap: float = 0.0) -> list[int]:
    """`count` requests from 127.0.0.1, one after the other, each on a new connection: their statuses (0: none)."""
    codes = []
    for _ in range(count):
        try:
            codes.append(httpx.post(f"{url}/predict", content=GOOD, headers=JSON, timeout=10).status_code)
        except httpx.HTTPError:
            codes.append(0)
        time.sleep(gap)
    return codes


def test_a_reconnect_flood_from_one_client_starves_no_other(crowd):
    """Issue 42: 3,000 sockets that reconnect as soon as they are closed made 12 of 20 real requests fail. Here 300
    from 127.0.0.2 against a server of 100 connections, 20 per client: that client churns through its own 20, and
    19 or more of 20 requests from 127.0.0.1 are answered."""
    with crowds.flooding(crowd.port, 300) as opened:
        time.sleep(1)
        codes = _answered(crowd.url, 20)
        time.sleep(1)
        assert opened() > 300, "the flood did not reconnect"
    assert codes.count(200) >= 19, codes


def test_a_slow_body_flood_from_one_client_starves_no_other(crowd):
    """Issue 42: 1,100 senders of a byte every 3 s (more than --max-connections) left 3 of 21 real requests
    answered: every connection had a request in progress. Here 110 from 127.0.0.2, a byte a second, against 100
    connections: the client keeps 20 busy, its others get a 429 at once (and reconnect), and 19 or more of 20
    requests from 127.0.0.1 are answered."""
    with crowds.flooding(crowd.port, 110, "slow") as flood:
        time.sleep(2)  # their heads are in: 20 requests in progress
        codes = _answered(crowd.url, 20, gap=0.1)
        flood.pause()
        # more from that client: each let in takes the place of one of its own that waits without a request (the
        # flood's newest), and holds it busy; once all 20 are busy, the next is refused
        refused = crowds.crowded_answer(crowd.port)
    assert codes.count(200) >= 19, codes
    assert refused[0] == 429 and "20 connections from your address (127.0.0.2)" in refused[2]["detail"], refused


def test_without_the_per_client_cap_either_flood_starves_the_others(trained):
    """The baseline of the two tests above: the same floods against a server whose per-client cap is its 100
    connections (no cap) leave fewer than 19 of 20 requests from 127.0.0.1 answered (measured: 1 and 0)."""
    uncapped = crowds.serve(trained, "--max-connections", "100", "--max-connections-per-client", "100")
    with crowds.flooding(uncapped.port, 300):
        time.sleep(1)
        reconnect = _answered(uncapped.url, 20)
    time.sleep(1)
    with crowds.flooding(uncapped.port, 110, "slow"):
        time.sleep(2)
        slow = _answered(uncapped.url, 20, gap=0.1)
    assert reconnect.count(200) < 19 and slow.count(200) < 19, (reconnect, slow)


def test_a_text_that_cleans_into_many_characters_is_refused_and_blocks_nobody(crowd):
    """5,000 x U+FDFA clean (NFKC) to 90,000 characters; counting their tokens held the one counting thread for
    seconds per text (a short request waited 25.7 s). Now the first text longer once cleaned than the server's
    --max-chars (5,000 here) stops the request (a 422 naming the cleaned length and the limit) before any token is
    counted; 1,111 x U+FDFA (19,998 characters once cleaned, under the 20,000 first used as the cap) too: 32
    requests of 64 such texts, 8 at a time, leave a short request answered at once."""
    shapes = [{"texts": ["\ufdfa" * 5000] * 64}, {"texts": ["\ufdfa" * 1111] * 64}]
    with ThreadPoolExecutor(8) as pool:
        flood = [pool.submit(httpx.post, f"{crowd.url}/predict", json=shapes[i % 2], timeout=60) for i in range(32)]
        waits = []
        while not all(f.done() for f in flood) or not waits:
            started = time.time()
            assert httpx.post(f"{crowd.url}/predict", content=GOOD, headers=JSON, timeout=60).status_code == 200
            waits.append(time.time() - started)
        answers = [f.result() for f in flood]
    assert {r.status_code for r in answers} == {422}
    assert answers[0].json() == {"detail": "texts[0]: 90,000 characters once cleaned (Unicode NFKC and HTML "
                                           "entities expand it); at most 5,000", "field": "texts[0]"}
    assert answers[1].json()["detail"].startswith("texts[0]: 19,998 characters once cleaned"), answers[1].text
    assert max(waits) < 2, [round(w, 2) for w in waits]


def test_a_request_too_costly_alone_is_refused_up_front():
    """The catalogue's case (serve-too-costly), on any machine: a scripted model whose passes sleep 0.1 ms per
    padded token, 0.5 s per request; once three full passes have measured the pace, 64 texts of 128 tokens
    (8,192 padded tokens: at least 0.82 s) are a 413 at once, naming the estimate and the timeout, and none of
    their texts reaches the model (crowds.too_costly); a request that fits is answered (test_serving.py: the
    same on a pace of 0.6 ms)."""
    status, _, body = crowds.too_costly(None)
    assert status == 413 and body["field"] == "texts", body
    estimate = float(body["detail"].split("needs about ", 1)[1].split(" s", 1)[0])
    assert estimate >= 0.8 and "(64 texts, 8,192 padded tokens at the measured" in body["detail"], body
    assert body["detail"].endswith("; the request timeout is 0.5 s: send fewer or shorter texts"), body
