"""The Python client: the same chain-of-stages model, on the client side.

``async with connect(url) as conn:`` opens one connection; ``async for conn in
connect(url, setup):`` reconnects whenever the connection drops, with exponential
backoff and jitter, running ``setup`` on each new connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TypedDict, Unpack
from urllib.parse import urlsplit

from .connection import Connection, Setup
from .errors import CloseCode, HandshakeRejected
from .limits import Rate
from .options import Drive, Settings, TextPolicy
from .transports.websockets.client import RETRYABLE, open_client, read

__all__ = ["Backoff", "ClientOptions", "connect"]

logger = logging.getLogger("aiosocker")


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long ``async for conn in connect(...)`` waits between attempts."""

    initial: float = 0.5
    """First delay, in seconds."""
    maximum: float = 30.0
    """Delays never grow past this."""
    factor: float = 2.0
    """Each failed attempt multiplies the delay by this."""
    jitter: float = 0.5
    """Fraction of each delay drawn at random, so clients don't reconnect in step."""

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs factor >= 1 and 0 <= jitter <= 1")

    def delays(self) -> AsyncIterator[float]:
        """An endless series of delays (used internally; handy in tests)."""
        return self._delays()

    async def _delays(self) -> AsyncIterator[float]:
        delay = self.initial
        while True:
            yield delay * (1 - self.jitter * random.random())
            delay = min(delay * self.factor, self.maximum)


class ClientOptions(TypedDict, total=False):
    """Options a client connection shares with the server's (each documented on
    :class:`~aiosocker.options.Settings`)."""

    drive: Drive
    max_queue: int
    text: TextPolicy
    max_size: int
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float
    max_memory: int
    rate: Rate | None


class connect:
    """Connect to a socker (or any binary WebSocket) server.

    >>> async with aiosocker.connect("ws://127.0.0.1:8765/") as conn:   # doctest: +SKIP
    ...     @conn.stage()
    ...     def scene(message: bytes) -> bool: ...

    Add stages in ``setup`` or right after ``async with`` (before your first ``await``):
    messages are handled from then on.

    Args:
        url: the server's ``ws://`` or ``wss://`` URL.
        setup: called with each new connection to build its chain.
        origin: ``Origin`` header to send (browsers always send one; scripts need not).
        headers: extra HTTP headers for the handshake (e.g. a token).
        open_timeout: seconds the handshake may take.
        backoff: delays between attempts when iterating.
        resume_token: a token from an earlier connection's ``conn.resume_token``, to
            resume that session (servers with ``resume=``); iterating does it by itself.
        **options: :class:`ClientOptions` (``drive``, ``max_queue``, ``text``,
            ``max_size``, pings, ``close_timeout``), as for the server's connections.
    """

    def __init__(
        self,
        url: str,
        setup: Setup | None = None,
        *,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        open_timeout: float | None = 10,
        resume_token: str | None = None,
        backoff: Backoff | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"url must start with ws:// or wss://, got {url!r}")
        self.url = url
        self.setup = setup
        self.backoff = backoff or Backoff()
        self.settings = Settings.of(options)
        self._origin = origin
        self._headers = dict(headers or {})
        self._open_timeout = open_timeout
        self.resume_token = resume_token
        """The token the next connection resumes with (``None``: a fresh session)."""
        self._current: tuple[Connection, asyncio.Task[None]] | None = None

    async def _open(self) -> tuple[Connection, asyncio.Task[None]]:
        conn, transport = await open_client(
            self.url,
            self.settings,
            origin=self._origin,
            headers=self._headers,
            open_timeout=self._open_timeout,
            resume_token=self.resume_token,
        )
        try:
            if self.setup is not None:
                result = self.setup(conn)
                if inspect.isawaitable(result):
                    await result
            await conn._start()
        except BaseException:
            await transport.close(CloseCode.INTERNAL_ERROR, "client setup failed")
            raise
        return conn, asyncio.create_task(read(conn, transport))

    @staticmethod
    async def _finish(conn: Connection, reader: asyncio.Task[None]) -> None:
        await conn.close()
        await reader

    async def __aenter__(self) -> Connection:
        if self._current is not None:
            raise RuntimeError("this connect() is already in use")
        self._current = await self._open()
        return self._current[0]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._current is not None
        current, self._current = self._current, None
        await self._finish(*current)

    def __aiter__(self) -> AsyncIterator[Connection]:
        return self._reconnecting()

    async def _reconnecting(self) -> AsyncIterator[Connection]:
        delays = self.backoff.delays()
        while True:
            try:
                conn, reader = await self._open()
            except HandshakeRejected as exc:
                if exc.status != 503:  # refused for good (auth, origin, path)
                    raise
                logger.info("server full (503); retrying")
            except RETRYABLE as exc:
                logger.info("connecting to %s failed: %r; retrying", self.url, exc)
            else:
                delays = self.backoff.delays()  # a success resets the backoff
                try:
                    yield conn
                    await conn.wait_closed()
                finally:
                    await self._finish(conn, reader)
                    # Come back as the same session if the server keeps it for us.
                    self.resume_token = conn.resume_token if conn.may_resume else None
                continue
            await asyncio.sleep(await anext(delays))
