"""Run the web API: bind the port first (in use: one line, exit code 4; the CLI does it before anything slow),
then serve while the model loads on the model thread (GET /ready says when); `serving … on http://…` is printed
once the model is loaded and the port accepts connections."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

from qlora_sentiment.core.errors import QloraError

EXIT_ADDRESS_IN_USE = 4


class AddressInUse(QloraError):
    """Another process listens on --host:--port (the CLI exits with EXIT_ADDRESS_IN_USE)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise QloraError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{host}:{port} is already in use (another server?); stop it or pick another "
                               "--port") from None
        raise QloraError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def serve(sock: socket.socket, load, what: str, limits, metrics: dict | None) -> None:
    """Serve on `sock` (from `bind`) until SIGINT/SIGTERM; a model that fails to load stops the server and its
    error is raised here."""
    import uvicorn

    from qlora_sentiment.serving.web import create_app

    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    failures: list[BaseException] = []
    tasks: list[asyncio.Task] = []

    async def announce():
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"{what} on {url} (docs at /docs)", file=sys.stderr, flush=True)

    def on_failure(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(load, limits, metrics, on_ready=lambda: tasks.append(asyncio.ensure_future(announce())),
                     on_failure=on_failure)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=int(limits.request_timeout) + 1))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if failures:
        raise failures[0]
