"""The server under test, run as its own process: ``python -m bench.server --kind K --mode M``.

It listens on 127.0.0.1, port 0, prints ``PORT <n>`` once listening (``NA <reason>`` if
this kind cannot run yet, ``ERR <error>`` if it failed) and runs until its stdin closes
(the bench exiting closes it) or ``--lifetime`` seconds pass.

Kinds (the same work on each side, so their costs compare):

* ``raw-websockets``: ``websockets.asyncio.server.serve``, compression off.
* ``socker``: ``aiosocker.serve(setup, drive="async")`` with stage handlers.
* ``socker-tick``: ``aiosocker.serve(setup, drive="tick")`` and a 60 Hz loop of ``server.tick()``.
* ``raw-picows``: a ``picows`` listener.
* ``socker-picows``: ``aiosocker.serve(setup, drive="async", transport="picows")``.
* ``raw-aiortc`` / ``socker-rtc``: the WebRTC figures (see :mod:`bench.rtc`).

Modes:

* ``stream``: the first message is ``b"N:<n>"``; the server counts the ``n`` messages
  that follow and prints ``DONE <n> <wall_ns> <cpu_ns>`` (wall and process CPU time from
  that first message to the n-th).
* ``echo``: every message is sent back.
* ``idle``: connections are accepted and read from; nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from .procs import raise_nofile
from .runner import Unavailable

HOST = "127.0.0.1"
TICK_HZ = 60

Ready = Callable[[int], None]


class Life:
    """Until when the server runs: stdin closed, or the lifetime spent."""

    def __init__(self, lifetime: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.deadline = self.loop.time() + lifetime
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(fd)
                self.stop.set()

        self.loop.add_reader(fd, on_stdin)

    def over(self) -> bool:
        return self.stop.is_set() or self.loop.time() >= self.deadline

    async def wait(self) -> None:
        remaining = max(0.0, self.deadline - self.loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), remaining)


def report(n: int, t0: int, c0: int) -> None:
    """The stream's end: ``DONE <n> <wall_ns> <cpu_ns>`` since its first message."""
    wall = time.perf_counter_ns() - t0
    cpu = time.process_time_ns() - c0
    print(f"DONE {n} {wall} {cpu}", flush=True)


def parse_hello(message: bytes) -> int:
    if not message.startswith(b"N:"):
        raise ValueError(f"stream must start with b'N:<count>', got {message[:20]!r}")
    return int(message[2:])


# -- raw websockets --------------------------------------------------------------------


async def raw_websockets(mode: str, ready: Ready, life: Life) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def stream(ws: ServerConnection) -> None:
        n = parse_hello(await ws.recv())  # type: ignore[arg-type]
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        count = 0
        async for _ in ws:
            count += 1
            if count == n:
                report(n, t0, c0)

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def idle(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    handler = {"stream": stream, "echo": echo, "idle": idle}[mode]
    async with serve(handler, HOST, 0, compression=None) as server:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()


# -- raw picows ------------------------------------------------------------------------


async def raw_picows(mode: str, ready: Ready, life: Life) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    binary = WSMsgType.BINARY

    def control(transport: Any, frame: Any) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    # Each listener takes the payload as bytes, as a websockets handler (or a stage
    # handler) receives it: the floor socker-on-picows is compared with.
    class Stream(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.count = 0
            self.t0 = 0
            self.c0 = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)
                return
            message = frame.get_payload_as_bytes()
            if not self.n:
                self.n = parse_hello(message)
                self.t0, self.c0 = time.perf_counter_ns(), time.process_time_ns()
                return
            self.count += 1
            if self.count == self.n:
                report(self.n, self.t0, self.c0)

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)
                return
            transport.send(binary, frame.get_payload_as_bytes())

    class Idle(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not binary:
                control(transport, frame)

    listener = {"stream": Stream, "echo": Echo, "idle": Idle}[mode]
    server = await ws_create_server(lambda request: listener(), HOST, 0)
    try:
        ready(server.sockets[0].getsockname()[1])
        await life.wait()
    finally:
        server.close()


# -- socker ----------------------------------------------------------------------------
# PLUG POINT: these run once aiosocker.serve exists (see the module docstring for the API).


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
    "echo": socker_echo_setup,
    "idle": socker_idle_setup,
}


async def _socker(
    mode: str, ready: Ready, life: Life, *, drive: str, transport: str | None
) -> None:
    listening = False
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


# -- WebRTC (bench.rtc) ----------------------------------------------------------------


async def raw_aiortc(mode: str, ready: Ready, life: Life) -> None:
    from .rtc import serve_raw_aiortc

    await serve_raw_aiortc(ready, life)


async def socker_rtc(mode: str, ready: Ready, life: Life) -> None:
    from .rtc import serve_socker_rtc

    await serve_socker_rtc(ready, life)


KINDS: dict[str, tuple[Callable[[str, Ready, Life], Awaitable[None]], tuple[str, ...]]] = {
    "raw-websockets": (raw_websockets, ("stream", "echo", "idle")),
    "aiosocker": (socker_async, ("stream", "echo", "idle")),
    "socker-tick": (socker_tick, ("stream", "echo", "idle")),
    "raw-picows": (raw_picows, ("stream", "echo", "idle")),
    "socker-picows": (socker_picows, ("stream", "echo", "idle")),
    "raw-aiortc": (raw_aiortc, ("rtc",)),
    "socker-rtc": (socker_rtc, ("rtc",)),
}


def ready(port: int) -> None:
    print(f"PORT {port}", flush=True)


async def _main(kind: str, mode: str, lifetime: float) -> None:
    run, modes = KINDS[kind]
    if mode not in modes:
        raise SystemExit(f"kind {kind!r} has no mode {mode!r} (modes: {', '.join(modes)})")
    await run(mode, ready, Life(lifetime))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    parser.add_argument("--mode", required=True)
    parser.add_argument("--lifetime", type=float, default=900.0, help="exit after this (s)")
    parser.add_argument("--nofile", type=int, default=0, help="raise RLIMIT_NOFILE to this")
    args = parser.parse_args(argv)
    if args.nofile:
        raise_nofile(args.nofile)
    try:
        asyncio.run(_main(args.kind, args.mode, args.lifetime))
    except Unavailable as exc:
        print(f"NA {exc}", flush=True)
        return 0
    except Exception as exc:
        traceback.print_exc()
        print(f"ERR {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
