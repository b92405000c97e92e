"""Fixtures for tests with real servers and real clients on 127.0.0.1.

``start_server(setup, **options)`` starts ``aiosocker.serve(setup, port=0, ...)`` and stops
it at teardown; the teardown then checks that no task outlived the servers.
``Recorder`` collects what a connection's hooks were called with.

Every test that uses ``start_server`` (or asks for ``transport``) runs once per server
transport, with ids ``[websockets]`` and ``[picows]``. A test or module marked
``@pytest.mark.transports("picows", reason=...)`` runs on the transports it names only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

import aiosocker
from aiosocker import TransportName

HOST = "127.0.0.1"

TRANSPORTS: tuple[TransportName, ...] = ("websockets", "picows")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "transports(*names, reason): run only on these server transports (say why in reason)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``transport`` (and so ``start_server``) over the server transports."""
    if "transport" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("transports")
    names = TRANSPORTS if marker is None else marker.args
    if marker is not None:
        assert set(names) <= set(TRANSPORTS), f"unknown transport in {names}"
        assert marker.kwargs.get("reason"), "say why a test runs on some transports only"
    metafunc.parametrize("transport", names)


class StartServer(Protocol):
    async def __call__(
        self, setup: aiosocker.Setup, *, port: int = 0, **options: Any
    ) -> aiosocker.Server: ...


async def eventually(
    condition: Callable[[], object],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
    what: str = "condition",
) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def leftover_tasks(
    before: set[asyncio.Task[Any]],
    timeout: float = 2.0,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
) -> set[Any]:
    """Tasks started since ``before`` that are still running after ``timeout`` seconds."""
    me = asyncio.current_task()
    deadline = time.monotonic() + timeout
    while True:
        extra = {t for t in asyncio.all_tasks() if t not in before and t is not me}
        if not extra or time.monotonic() > deadline:
            return extra
        await asyncio.sleep(0.01)


@pytest.fixture
async def start_server(transport: TransportName) -> AsyncIterator[StartServer]:
    """Start real servers on 127.0.0.1 with the test's ``transport``; close them and
    check for leaked tasks after."""
    before = set(asyncio.all_tasks())
    servers: list[aiosocker.Server] = []

    async def start(setup: aiosocker.Setup, *, port: int = 0, **options: Any) -> aiosocker.Server:
        server = aiosocker.serve(setup, HOST, port, transport=transport, **options)
        await server.start()
        assert server.settings.transport == transport
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(), 5)
        assert not server.connections, f"connections left after close: {server.connections}"
    leaked = await leftover_tasks(before)
    assert not leaked, f"tasks left running after the servers closed: {leaked}"


@dataclass
class Recorder:
    """Records hook calls: use ``rec.on_open`` etc. as hooks."""

    opened: list[aiosocker.Connection] = field(default_factory=list)
    closed: list[tuple[aiosocker.Connection, int, str]] = field(default_factory=list)
    errors: list[tuple[aiosocker.Connection, BaseException]] = field(default_factory=list)

    def on_open(self, conn: aiosocker.Connection) -> None:
        self.opened.append(conn)

    async def on_close(self, conn: aiosocker.Connection, code: int, reason: str) -> None:
        await asyncio.sleep(0)  # an async hook, to show it is awaited
        self.closed.append((conn, code, reason))

    def on_error(self, conn: aiosocker.Connection, exc: BaseException) -> None:
        self.errors.append((conn, exc))

    def hooks(self) -> dict[str, Any]:
        return {"on_open": self.on_open, "on_close": self.on_close, "on_error": self.on_error}

    async def wait_closed(
        self,
        count: int = 1,
        timeout: float = 2.0,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
    ) -> None:
        await eventually(
            lambda: len(self.closed) >= count, timeout=timeout, what=f"{count} close hook(s)"
        )

    def codes(self) -> list[tuple[int, str]]:
        return [(code, reason) for _, code, reason in self.closed]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def collector(into: list[bytes], result: bool = False) -> Callable[[bytes], bool]:
    """A sync stage handler that appends each message to ``into``."""

    def collect(message: bytes) -> bool:
        into.append(message)
        return result

    return collect


def fill_write_queue(conn: aiosocker.Connection, peer: aiosocker.Connection) -> int:
    """Make ``conn``'s peer (the client ``peer``, in this process) stop reading, then
    ``conn.write()`` 64 KiB messages until it raises QueueFullError: the socket's
    buffers take megabytes first (write() hands a message to the socket at once while
    nothing waits). Returns how many went in. ``peer``'s
    ``_transport.ws.transport.resume_reading()`` lets them through."""
    peer._transport.ws.transport.pause_reading()  # type: ignore[attr-defined]
    for written in range(5000):  # bounded: 320 MB, far past any socket buffer
        try:
            conn.write(written.to_bytes(4, "big") + bytes(2**16))
        except aiosocker.QueueFullError:
            return written
    raise AssertionError("the write queue never filled")
