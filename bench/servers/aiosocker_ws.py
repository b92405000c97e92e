"""Kinds ``aiosocker``, ``socker-tick``, ``socker-picows`` and ``socker-picows-tick``:
``aiosocker.serve`` with stage handlers doing the raw servers' work (async drive; tick
drive at 60 Hz; async and tick drive on the picows transport). Mode ``players`` is the
players-per-core game (:mod:`bench.servers.players_socker`). A kind whose socker feature
is missing answers ``NA``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

from ..runner import Unavailable
from .base import HOST, Life, Ready, parse_hello, report
from .players_socker import socker_players

TICK_HZ = 60


def socker_serve(setup: Callable[[Any], None], *, drive: str, transport: str | None = None) -> Any:
    """``aiosocker.serve(setup, host, port=0, drive=...)``: the async context manager.

    Raises :class:`Unavailable` while ``aiosocker.serve`` (or the transport) does not exist.
    Compression is turned off where ``serve`` lets us (the bench clients never offer it).
    """
    import aiosocker

    serve = getattr(aiosocker, "serve", None)
    if serve is None:
        raise Unavailable("aiosocker.serve does not exist yet")
    kwargs: dict[str, Any] = {"host": HOST, "port": 0, "drive": drive}
    try:
        params = inspect.signature(serve).parameters
    except (TypeError, ValueError):
        params = {}
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "compression" in params:
        kwargs["compression"] = None
    if transport is not None:
        if params and "transport" not in params and not open_kwargs:
            raise Unavailable(f"aiosocker.serve has no transport= yet (wanted {transport!r})")
        kwargs["transport"] = transport
    try:
        return serve(setup, **kwargs)
    except (ValueError, NotImplementedError) as exc:
        if transport is not None:
            raise Unavailable(f"aiosocker.serve(transport={transport!r}): {exc}") from exc
        raise


def socker_stream_setup(conn: Any) -> None:
    """Stage 1 reads ``N:<n>`` and advances; stage 2 counts, staying, and reports the n-th."""
    n = count = t0 = c0 = 0

    def hello(message: bytes) -> bool:
        nonlocal n, t0, c0
        n = parse_hello(message)
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        return True

    def counting(message: bytes) -> bool:
        nonlocal count
        count += 1
        if count == n:
            report(n, t0, c0)
        return False

    conn.add(hello, name="hello")
    conn.add(counting, name="count")


def socker_stream_async_setup(conn: Any) -> None:
    """The stream with an ``async def`` counting stage (``ws_stream_async``): what an
    async handler costs end to end against the raw ``async for``."""
    n = count = t0 = c0 = 0

    def hello(message: bytes) -> bool:
        nonlocal n, t0, c0
        n = parse_hello(message)
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        return True

    async def counting(message: bytes) -> bool:
        nonlocal count
        count += 1
        if count == n:
            report(n, t0, c0)
        return False

    conn.add(hello, name="hello")
    conn.add(counting, name="count")


def socker_echo_setup(conn: Any) -> None:
    async def echo(message: bytes) -> bool:
        await conn.send(message)
        return False

    conn.add(echo, name="echo")


def socker_idle_setup(conn: Any) -> None:
    def idle(message: bytes) -> bool:
        return False

    conn.add(idle, name="idle")


SOCKER_SETUPS = {
    "stream": socker_stream_setup,
    "stream-async": socker_stream_async_setup,
    "echo": socker_echo_setup,
    "idle": socker_idle_setup,
}


async def _socker(
    mode: str, ready: Ready, life: Life, *, drive: str, transport: str | None
) -> None:
    listening = False
    if mode == "players":
        try:
            await socker_players(ready, life, serve=socker_serve, drive=drive, transport=transport)
        except (ValueError, NotImplementedError, ImportError) as exc:
            if transport is None:
                raise
            raise Unavailable(f"aiosocker.serve(transport={transport!r}): {exc}") from exc
        return
    try:
        async with socker_serve(SOCKER_SETUPS[mode], drive=drive, transport=transport) as server:
            listening = True
            ready(server.port)
            await _socker_run(server, life, drive)
    except (ValueError, NotImplementedError, ImportError) as exc:
        if listening or transport is None:
            raise
        raise Unavailable(f"aiosocker.serve(transport={transport!r}): {exc}") from exc


async def _socker_run(server: Any, life: Life, drive: str) -> None:
    if drive != "tick":
        await life.wait()
        return
    # A game loop: tick at 60 Hz, sleeping in between (the sleep also runs I/O).
    loop = asyncio.get_running_loop()
    period = 1 / TICK_HZ
    due = loop.time()
    while not life.over():
        result = server.tick()
        if inspect.isawaitable(result):
            await result
        due += period
        delay = due - loop.time()
        if delay < 0:  # fell behind: don't try to catch up in a burst
            due, delay = loop.time(), 0.0
        await asyncio.sleep(delay)


async def socker_async(mode: str, ready: Ready, life: Life) -> None:
    await _socker(mode, ready, life, drive="async", transport=None)


async def socker_tick(mode: str, ready: Ready, life: Life) -> None:
    await _socker(mode, ready, life, drive="tick", transport=None)


async def socker_picows(mode: str, ready: Ready, life: Life) -> None:
    await _socker(mode, ready, life, drive="async", transport="picows")


async def socker_picows_tick(mode: str, ready: Ready, life: Life) -> None:
    await _socker(mode, ready, life, drive="tick", transport="picows")
