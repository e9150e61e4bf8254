"""How uvicorn's HTTP protocol reaches `serve`'s own accept loop: the one place that leans on how uvicorn works
rather than on what it documents.

uvicorn documents `Server.serve(sockets=[...])` (serve on sockets bound elsewhere) and `Config(loop=...)`, but it
offers no way to get its per-connection protocol factory, nor to hand it connections accepted elsewhere. What it
does with the sockets (uvicorn 0.54, server.py `Server.startup`) is `await loop.create_server(create_protocol,
sock=sock, ssl=..., backlog=...)` on the running event loop, keeps what that returns, and at shutdown calls its
`close()` and `await wait_closed()`. `ServingLoop`, a `SelectorEventLoop` (public asyncio), answers that call for
the listening socket it was given with `AcceptLoop` (server/connections.py: an `asyncio.AbstractServer`) around
uvicorn's factory, and every other call as asyncio does. Nothing of uvicorn is imported, subclassed or replaced.

If a uvicorn release stops calling `create_server` this way, `serve` refuses to start (`ServingLoop.check`:
"uvicorn did not hand ... its protocol factory"), and tests/test_server_connections.py fails first.
"""

from __future__ import annotations

import asyncio
import socket

from qlora_sentiment.server.connections import AcceptLoop, Connections
from qlora_sentiment.server.http_connection import HttpConnection


class ServingLoop(asyncio.SelectorEventLoop):
    """An event loop on which uvicorn's `Server.serve(sockets=[sock])` serves `sock` through `AcceptLoop`: capped
    connections, each an `HttpConnection` in front of uvicorn's protocol."""

    def __init__(self, sock: socket.socket, pool: Connections):
        super().__init__()
        self.listening, self.pool = sock, pool

    async def create_server(self, protocol_factory, host=None, port=None, *, sock=None, **kwargs):
        if sock is None or sock is not self.listening:
            return await super().create_server(protocol_factory, host, port, sock=sock, **kwargs)
        if kwargs.get("ssl") is not None:
            raise ValueError("serve's accept loop does not speak TLS")
        self.pool.accepting = AcceptLoop(self, sock, self.pool,
                                         lambda key: HttpConnection(self.pool, key, protocol_factory))
        return self.pool.accepting

    def check(self) -> None:
        """Raise unless uvicorn's protocol factory came through `create_server` (the server has started)."""
        if self.pool.accepting is None:
            raise RuntimeError("uvicorn did not hand serve's event loop its protocol factory (loop.create_server "
                               "with the listening socket): this uvicorn release serves sockets another way")


def serve_on(server, sock: socket.socket, pool: Connections) -> None:
    """`server.serve(sockets=[sock])` (a uvicorn.Server) on a `ServingLoop`, until it exits."""
    with asyncio.Runner(loop_factory=lambda: ServingLoop(sock, pool)) as runner:
        loop = runner.get_loop()

        async def serve():
            task = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if not task.done():
                loop.check()
            await task
        runner.run(serve())
