"""What `serve` answers to a request head it will not read (server/http_connection.py reads every head first): its
message framing (RFC 9112 section 6.3) and malformed HTTP, as a 400 in the one error shape that closes the
connection.

A request whose body length is ambiguous is a smuggling vector behind a proxy that reads the length another way:
the server must not guess, and must close the connection after answering, so that no byte after the head can be
read as a new request. h11 (0.16) refuses several differing Content-Length values and any Transfer-Encoding but a
lone `chunked` itself (its 501 hint becomes a 400 here: RFC 9112 says 400 when chunked is not the final coding);
it reads a request with both Content-Length and Transfer-Encoding by the Transfer-Encoding and keeps the
connection open, which `framing_problem` refuses, as it refuses Transfer-Encoding in an HTTP/1.0 request.
"""

from __future__ import annotations

import h11

AMBIGUOUS = "request: ambiguous framing ({}); send one Content-Length, or Transfer-Encoding: chunked alone"

# h11's reason for a framing it refuses -> what the detail says
H11_FRAMING = {
    "conflicting Content-Length headers": "Content-Length values differ",
    "Only Transfer-Encoding: chunked is supported": "Transfer-Encoding other than chunked alone",
    "multiple Transfer-Encoding headers": "Transfer-Encoding given more than once",
}


def framing_problem(event: h11.Request) -> str | None:
    """Why the body of a request head h11 accepted has no single length, or None."""
    names = {name.lower() for name, _ in event.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return "both Content-Length and Transfer-Encoding"
    if b"transfer-encoding" in names and event.http_version == b"1.0":
        return "Transfer-Encoding in an HTTP/1.0 request"
    return None


class AmbiguousFraming(h11.RemoteProtocolError):
    """A request head h11 accepted, refused for its framing (answered as h11's own errors are)."""

    def __init__(self, problem: str):
        super().__init__(problem, error_status_hint=400)


def bad_request(error: h11.RemoteProtocolError) -> tuple[int, str]:
    """(status, detail) of the answer to a head that cannot be read: an ambiguous framing is a 400 naming it;
    other errors keep h11's status hint (400, or 431 for a head over 16 KiB) and name h11's reason."""
    reason = str(error)
    if isinstance(error, AmbiguousFraming) or reason in H11_FRAMING:
        return 400, AMBIGUOUS.format(H11_FRAMING.get(reason, reason))
    status = getattr(error, "error_status_hint", 400) or 400
    return status, f"request: not valid HTTP/1.1 ({reason[:200] if reason else 'Invalid HTTP request received'})"
