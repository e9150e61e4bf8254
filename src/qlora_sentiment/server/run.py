"""Run the web API: bind the port first (in use: one line, exit code 4; the CLI does it before anything slow),
then serve while the model loads on the model thread (GET /ready says when); `serving … on http://…` is printed
once the model is loaded and the port accepts connections. Ctrl-C / SIGTERM, at any point: one line, exit code
130 / 143. Connections are bounded (server/connections.py, server/http_connection.py: uvicorn serves through
them, server/uvicorn_sockets.py), and uvicorn sends no `server` banner."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import math
import os
import signal
import socket
import sys

from qlora_sentiment.core.errors import QloraError
from qlora_sentiment.problems.serve import bad_input

EXIT_ADDRESS_IN_USE = 4


def bounded(minimum, maximum, kind=int):
    """An argparse `type`: a number in [minimum, maximum] (`must be >= 1` / `must be at most 1,024`)."""
    from qlora_sentiment.cli_inputs import at_least

    at_least_minimum = at_least(minimum, kind)

    def parse(text: str):
        value = at_least_minimum(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {text}")
        return value
    return parse


def seconds(maximum: float):
    """An argparse `type`: seconds in (0, maximum]."""
    from qlora_sentiment.cli_inputs import positive_seconds

    def parse(text: str) -> float:
        value = positive_seconds(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g} s, got {text}")
        return value
    return parse


def host_list(text: str) -> list[str]:
    """An argparse `type`: `--allowed-hosts example.com,*.example.org,127.0.0.1`."""
    from qlora_sentiment.server.middleware import allowed_host

    entries = [entry for entry in text.split(",") if entry.strip()]
    if not entries:
        raise argparse.ArgumentTypeError("give at least one host name (or * for any)")
    try:
        return [allowed_host(entry) for entry in entries]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_timing(args) -> None:
    """What one flag's bounds cannot say: the body and the batch wait fit in a request's time (an unset
    --body-timeout is 10 s, or the request timeout when that is shorter)."""
    prefix = "qlora-sentiment serve: argument"
    if args.body_timeout is None:
        args.body_timeout = min(10.0, args.request_timeout)
    if args.body_timeout > args.request_timeout:
        raise QloraError(f"{prefix} --body-timeout: must be at most --request-timeout ({args.request_timeout:g} s), "
                         f"got {args.body_timeout:g}")
    if args.max_wait_ms >= args.request_timeout * 1000:
        raise QloraError(f"{prefix} --max-wait-ms: must be less than --request-timeout "
                         f"({args.request_timeout * 1000:g} ms), got {args.max_wait_ms:g}")


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
            raise AddressInUse(bad_input("serve-port-in-use").format(host=host, port=port)) from None
        raise QloraError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def serve(sock: socket.socket, load, what: str, limits, metrics: dict | None,
          allowed_hosts: list[str] | None = None) -> None:
    """Serve on `sock` (from `bind`) until SIGINT/SIGTERM; a model that fails to load stops the server and its
    error is raised here."""
    import uvicorn

    from qlora_sentiment.server.app import create_app
    from qlora_sentiment.server.connections import Connections
    from qlora_sentiment.server.floods import fit_connections, quiet_floods
    from qlora_sentiment.server.http_connection import MAX_HEAD, track_requests
    from qlora_sentiment.server.uvicorn_sockets import serve_on

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

    fitted = fit_connections(limits.max_connections)  # ulimit -n
    limits = dataclasses.replace(limits, max_connections=fitted,
                                 max_connections_per_client=min(limits.max_connections_per_client, fitted))
    connections = Connections(limits.max_connections, limits.idle_timeout, limits.max_connections_per_client)
    app = create_app(load, limits, metrics, on_ready=lambda: tasks.append(asyncio.ensure_future(announce())),
                     on_failure=on_failure, allowed_hosts=allowed_hosts)
    # idle connections are closed by server/http_connection.py (idle_timeout, 5 s after an answer): uvicorn's own
    # keep-alive timer, blind to a head still arriving, comes after both
    config = uvicorn.Config(track_requests(app), log_level="warning", lifespan="on", ws="none", http="h11",
                            server_header=False, h11_max_incomplete_event_size=MAX_HEAD,
                            timeout_keep_alive=math.ceil(limits.idle_timeout) + 1,
                            timeout_graceful_shutdown=int(limits.request_timeout) + 1)
    quiet_floods()  # after Config: it configures uvicorn's loggers
    server = uvicorn.Server(config)
    try:
        serve_on(server, sock, connections)
    finally:
        sock.close()
    if failures:
        raise failures[0]


STOP_SIGNALS = {signal.SIGINT: ("Ctrl-C", 130), signal.SIGTERM: ("SIGTERM", 143)}


class _Stopped(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals(command: str = "serve"):
    """SIGINT / SIGTERM whenever they come (importing, loading the model, serving, shutting down): one line on
    stderr, exit code 130 / 143, no traceback. While the server runs, uvicorn's own handlers stop it gracefully first
    (in-flight requests are answered) and then raise the signal again, which lands here."""
    def stop(signum, frame):
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    except (_Stopped, KeyboardInterrupt) as exc:
        name, code = STOP_SIGNALS[getattr(exc, "signum", signal.SIGINT)]
        print(f"{command}: stopped ({name})", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)  # now: the model thread (a daemon) may be inside a load that would outlive a normal exit
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
