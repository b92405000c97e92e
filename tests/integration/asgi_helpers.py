"""uvicorn in-process on a free loopback port, for the ASGI tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from aiosocker.transports.asgi import ASGIApp

WAIT = 5.0  # upper bound for anything that should happen "now"


class GracefulUvicorn(uvicorn.Server):
    """uvicorn with the shutdown recipe of docs/asgi.md: close socker's connections
    (1001, hooks run) before uvicorn closes every socket with 1012."""

    def __init__(self, config: uvicorn.Config, sock: ASGIApp | None) -> None:
        super().__init__(config)
        self.sock = sock

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.sock is not None:
            await self.sock.hub.close()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # leave pytest's signal handlers alone


@dataclass
class Running:
    server: GracefulUvicorn
    port: int

    def ws(self, path: str = "/ws/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def running(
    app: Any, *, sock: ASGIApp | None = None, **config: Any
) -> AsyncIterator[Running]:
    """Serve ``app`` with uvicorn on a free port; stop it (and check for leaks) after."""
    before = asyncio.all_tasks()
    cfg = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="warning", **config
    )
    server = GracefulUvicorn(cfg, sock)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:
                if task.done():
                    task.result()  # startup failed: raise why
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running(server, port)
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT * 2):
            await task
    leaked = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert not leaked, f"tasks left behind: {leaked}"
