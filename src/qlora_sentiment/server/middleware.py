"""Around the whole web app (its error answers included): the Host check (`--allowed-hosts`: the header must be a
host name or IP address with an optional port, nothing else: `127.0.0.1:1@evil.example` is refused, not read as
127.0.0.1), a cap on requests in progress, HEAD answered as GET without the body, `X-Content-Type-Options:
nosniff` on every answer; and what the app says about itself without the machine's paths (/info, 5xx details)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import PurePosixPath, PureWindowsPath

NOSNIFF = (b"x-content-type-options", b"nosniff")
_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def allowed_host(entry: str) -> str:
    """One `--allowed-hosts` entry, normalised (lower case, IPv6 in brackets), or ValueError saying why not."""
    host = entry.strip().lower().rstrip(".")
    if host == "*":
        return host
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not _NAME.match(host):
            raise ValueError(f"{entry!r} is not a host name, an IP address, '*.domain' or '*'") from None
        return host
    return f"[{address}]" if address.version == 6 else str(address)


_HOST_HEADER = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(:[0-9]{0,5})?$")


def request_host(header: str) -> str | None:
    """The host of a Host header, without its port ('' when empty); None unless the header is a host name, an IPv4
    address or a bracketed IPv6 address, with an optional port (RFC 9110's uri-host [":" port]: no userinfo, path
    or second value)."""
    match = _HOST_HEADER.match(header.strip().lower())
    if match is None:
        return "" if not header.strip() else None
    host = match.group(1)
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            return None
    return host.rstrip(".")


def host_allowed(host: str, allowed: list[str]) -> bool:
    return any(pattern == "*" or host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
               for pattern in allowed)


async def answer(send, status: int, detail: str, field: str | None = None, retry_after: int | None = None):
    """An error in the one shape, sent straight to an ASGI `send`."""
    body = json.dumps({"detail": detail, "field": field}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpPolicy:
    """ASGI middleware: wrong Host a 400, more than `max_requests` requests in progress a 503 (Retry-After), and
    nosniff on every response. Outside FastAPI's own error middleware, so that its 500s get the header too."""

    def __init__(self, app, allowed_hosts: list[str] | None, max_requests: int):
        self.app, self.allowed, self.max_requests = app, allowed_hosts, max_requests
        self.in_progress = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        if scope["method"] == "HEAD":  # answered as GET (a POST-only path: 405); uvicorn, whose own scope still
            scope = {**scope, "method": "GET"}  # says HEAD, sends the headers (GET's Content-Length) and no body

        async def send_nosniff(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), NOSNIFF]}
            await send(message)

        if self.allowed is not None:
            headers = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
            host = request_host(", ".join(headers)) if headers else ""
            if host is None:
                shown = json.dumps(", ".join(headers).strip(), ensure_ascii=True)[1:-1][:80]
                return await answer(send_nosniff, 400, f"host: '{shown}' is not a host name or address with an "
                                    "optional port; send Host: name[:port] (--allowed-hosts)", "host")
            if not host or not host_allowed(host, self.allowed):
                shown = json.dumps(host, ensure_ascii=True)[1:-1][:80]
                return await answer(send_nosniff, 400, f"host: '{shown}' is not served here (--allowed-hosts)"
                                    if host else "host: missing; send a Host header", "host")
        if self.in_progress >= self.max_requests:
            return await answer(send_nosniff, 503, f"busy: {self.max_requests} requests in progress; retry",
                                retry_after=1)
        self.in_progress += 1
        try:
            await self.app(scope, receive, send_nosniff)
        finally:
            self.in_progress -= 1


def _absolute(text: str) -> bool:
    return text.startswith(("/", "~")) or bool(re.match(r"^[A-Za-z]:[\\/]|^\\\\", text))


def without_paths(value):
    """`value` (JSON-like) with every absolute path replaced by its last part (the folder's or file's name)."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(item) for item in value]
    if isinstance(value, str) and _absolute(value):
        path = PureWindowsPath(value) if "\\" in value else PurePosixPath(value)
        return path.name
    return value


_PATH_IN_TEXT = re.compile(r"(?<![\w.:/~-])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\'\":,;()]+[/\\])+([^\s/\\'\":,;()]+)")


def scrub_paths(text: str) -> str:
    """A message with every absolute path inside it cut to its last part (`/home/me/models/adapter` → `adapter`)."""
    return _PATH_IN_TEXT.sub(r"\1", text)
