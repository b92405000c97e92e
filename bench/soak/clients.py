"""The soak's clients, run as processes: ``python -m bench.soak.clients ROLE --port N ...``.

Roles (each prints one ``RESULT <json>`` line when done, and never runs past
``--duration`` plus a bounded grace):

* ``ws``: ``--clients`` slots. Each slot starts sessions until the duration is spent: a
  *well-behaved* session walks the chain with ``aiosocker.connect`` (``hello`` ->
  ``handshake`` -> ``playing``), plays numbered messages and checks every echo came back,
  in order, then closes with 1000; with chance ``abrupt`` the session instead drops its
  TCP connection (``transport.abort()``) after the open, mid-``hello``, mid-``handshake``
  or mid-play.
* ``rtc``: the same with the rtc stages (``client_stages``, a real aiortc peer): reliable
  numbered messages on the WebSocket, as many on the unreliable DataChannel (counted, not
  required); the abrupt ones drop the TCP connection mid-chain, before the offer, mid-ICE
  (right after the ANSWER) or mid-play.
* ``hostile``: each client of :data:`bench.soak.common.HOSTILE`, ``--rounds`` times spread
  over the duration.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from ..procs import raise_nofile
from ..rtc_common import loopback_only
from .common import (
    ABRUPT_RTC,
    ABRUPT_WS,
    GO,
    HELLO,
    HOST,
    MAX_MEMORY,
    MAX_SIZE,
    RATE_MESSAGES,
    READY,
    SCENE,
    SLOWLORIS_LIMIT,
    STAGE_TIMEOUT,
    WELL_RTC,
    WELL_WS,
    seq_message,
    seq_of,
)

STEP = 15.0
"""Bound on any one wait of a session (the open, a stage, the last echoes)."""
GRACE = 45.0
"""Seconds past the duration a client process may take to finish its last sessions."""


class Tally:
    """What one client process saw."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.sessions: Counter[str] = Counter()
        self.sent = 0
        """Reliable messages sent by well-behaved sessions."""
        self.received = 0
        """Their echoes received."""
        self.in_order = 0
        """Well-behaved sessions whose echoes were exactly 0..n-1."""
        self.bad: list[dict[str, Any]] = []
        """Well-behaved sessions that failed (first few kept)."""
        self.bad_count = 0
        self.errors: Counter[str] = Counter()
        self.abrupt_at: Counter[str] = Counter()
        self.closed_with: Counter[int] = Counter()
        """Close codes the well-behaved sessions ended with."""
        self.open_ms: list[float] = []
        """The WebSocket opening handshake (TCP + HTTP upgrade)."""
        self.chain_ms: list[float] = []
        """From the connect call to the ``playing`` stage (the whole chain)."""
        self.rtc_ms: list[float] = []
        """rtc: from the connect call to the DataChannel open on both sides."""
        self.dc_sent = 0
        self.dc_received = 0
        self.hostile: list[dict[str, Any]] = []

    def failed(self, what: str, **detail: Any) -> None:
        self.bad_count += 1
        if len(self.bad) < 10:
            self.bad.append({"what": what, **detail})

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "sessions": dict(self.sessions),
            "sent": self.sent,
            "received": self.received,
            "in_order": self.in_order,
            "bad_count": self.bad_count,
            "bad": self.bad,
            "errors": dict(self.errors),
            "abrupt_at": dict(self.abrupt_at),
            "closed_with": {str(k): v for k, v in self.closed_with.items()},
            "open_ms": [round(v, 2) for v in self.open_ms],
            "chain_ms": [round(v, 2) for v in self.chain_ms],
            "rtc_ms": [round(v, 2) for v in self.rtc_ms],
            "dc_sent": self.dc_sent,
            "dc_received": self.dc_received,
            "hostile": self.hostile,
        }


def url(port: int, who: str) -> str:
    return f"ws://{HOST}:{port}/?who={who}"


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def abort(conn: Any) -> None:
    """Drop the TCP connection under an ``aiosocker.connect`` connection, no close frame."""
    conn._transport.ws.transport.abort()


async def play(
    conn: Any,
    n: int,
    interval: float,
    echoes: list[bytes],
    all_back: asyncio.Event,
    side: Callable[[int], None] | None = None,
) -> list[int]:
    """Send ``n`` numbered messages, one per ``interval``; wait for their echoes."""
    sent = []
    for seq in range(n):
        await conn.send(seq_message(seq))
        sent.append(seq)
        if side is not None:
            side(seq)
        await asyncio.sleep(interval)
    await asyncio.wait_for(all_back.wait(), STEP)
    return sent


def check_echoes(tally: Tally, who: str, sent: list[int], echoes: list[bytes]) -> None:
    got = [seq_of(m) for m in echoes]
    tally.sent += len(sent)
    tally.received += len(got)
    if got == sent:
        tally.in_order += 1
    else:
        tally.failed(f"{who}: echoes differ", sent=len(sent), got=len(got), first=got[:5])


# -- WebSocket clients ---------------------------------------------------------------


async def well_ws(port: int, rng: random.Random, plan: dict[str, Any], tally: Tally) -> None:
    import aiosocker

    n = rng.randint(*plan["messages"])
    echoes: list[bytes] = []
    all_back = asyncio.Event()
    playing = asyncio.Event()
    t0 = time.perf_counter()
    async with aiosocker.connect(url(port, WELL_WS), open_timeout=STEP) as conn:
        tally.open_ms.append(ms_since(t0))

        @conn.stage()
        async def scene(message: bytes) -> bool:
            if message != SCENE:
                raise ValueError(f"expected the scene, got {message[:20]!r}")
            await conn.send(READY)
            return True

        @conn.stage()
        def go(message: bytes) -> bool:
            if message != GO:
                raise ValueError(f"expected go, got {message[:20]!r}")
            playing.set()
            return True

        @conn.stage()
        def echo(message: bytes) -> bool:
            echoes.append(message)
            if len(echoes) >= n:
                all_back.set()
            return False

        await conn.send(HELLO)
        await asyncio.wait_for(playing.wait(), STEP)
        tally.chain_ms.append(ms_since(t0))
        sent = await play(conn, n, plan["interval"], echoes, all_back)
    check_echoes(tally, WELL_WS, sent, echoes)
    tally.closed_with[conn.close_code or 0] += 1


async def abrupt_ws(port: int, rng: random.Random, plan: dict[str, Any], tally: Tally) -> None:
    """A raw ``websockets`` client that aborts its TCP connection somewhere in the chain."""
    from websockets.asyncio.client import connect as ws_connect

    where = rng.choice(("open", "hello", "handshake", "playing"))
    tally.abrupt_at[where] += 1
    ws = await ws_connect(
        url(port, ABRUPT_WS), compression=None, ping_interval=None, open_timeout=STEP
    )
    try:
        async with asyncio.timeout(STEP):
            if where != "open":
                await ws.send(HELLO)
            if where in ("handshake", "playing"):
                await ws.recv()
                await ws.send(READY)
            if where == "playing":
                await ws.recv()
                for seq in range(rng.randint(1, 20)):
                    await ws.send(seq_message(seq))
                    if rng.random() < 0.5:
                        await asyncio.sleep(plan["interval"])
    finally:
        ws.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), STEP)


# -- rtc clients ---------------------------------------------------------------------


async def rtc_session(port: int, rng: random.Random, plan: dict[str, Any], tally: Tally) -> None:
    import aiosocker
    from aiosocker.rtc import client_stages

    abrupt = rng.random() < plan["abrupt"]
    tally.sessions["abrupt" if abrupt else "well"] += 1
    where = rng.choice(("hello", "offer", "ice", "playing")) if abrupt else None
    if where is not None:
        tally.abrupt_at[where] += 1
    n = rng.randint(*plan["messages"])
    echoes: list[bytes] = []
    all_back = asyncio.Event()
    opened = asyncio.Event()
    dc_got: list[bytes] = []
    t0 = time.perf_counter()
    who = ABRUPT_RTC if abrupt else WELL_RTC
    async with aiosocker.connect(url(port, who), open_timeout=STEP) as conn:
        tally.open_ms.append(ms_since(t0))

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await conn.send(READY)
            return True

        @conn.stage()
        async def go(message: bytes) -> bool:
            if where == "offer":
                await session.ready()
                abort(conn)  # READY sent: the server is making its offer
                return True
            await session.ready()
            return True

        session = client_stages(conn, timeout=STAGE_TIMEOUT)

        @session.on_message()
        def game(message: bytes) -> None:
            dc_got.append(message)

        @session.on_open
        def _open(s: Any) -> None:
            opened.set()

        @conn.stage()
        def echo(message: bytes) -> bool:
            echoes.append(message)
            if len(echoes) >= n:
                all_back.set()
            return False

        await conn.send(HELLO)
        if where == "hello":
            await asyncio.sleep(rng.uniform(0, 0.05))
            abort(conn)
            return
        if where == "offer":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wait_closed(), STEP)
            return
        if where == "ice":
            # The ANSWER went out (the chain is at rtc_open): ICE and DTLS are under way.
            deadline = time.monotonic() + STEP
            while conn.current != "rtc_open" and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            await asyncio.sleep(rng.uniform(0, 0.1))
            abort(conn)
            return
        await asyncio.wait_for(opened.wait(), STEP)
        tally.rtc_ms.append(ms_since(t0))
        if where == "playing":
            for seq in range(rng.randint(1, n)):
                await conn.send(seq_message(seq))
                session.send(b"u%d" % seq)
                await asyncio.sleep(plan["interval"])
            abort(conn)
            return

        def side(seq: int) -> None:
            if session.send(b"u%d" % seq):
                tally.dc_sent += 1

        sent = await play(conn, n, plan["interval"], echoes, all_back, side)
        await asyncio.sleep(0.2)  # the last DataChannel echoes
        tally.dc_received += len(dc_got)
    check_echoes(tally, WELL_RTC, sent, echoes)
    tally.closed_with[conn.close_code or 0] += 1


# -- the slots -----------------------------------------------------------------------


async def ws_session(port: int, rng: random.Random, plan: dict[str, Any], tally: Tally) -> None:
    if rng.random() < plan["abrupt"]:
        tally.sessions["abrupt"] += 1
        await abrupt_ws(port, rng, plan, tally)
    else:
        tally.sessions["well"] += 1
        await well_ws(port, rng, plan, tally)


async def slot(
    session: Callable[[int, random.Random, dict[str, Any], Tally], Awaitable[None]],
    port: int,
    rng: random.Random,
    plan: dict[str, Any],
    tally: Tally,
    deadline: float,
) -> None:
    await asyncio.sleep(rng.uniform(0, plan["ramp"]))
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(4 * STEP):
                await session(port, rng, plan, tally)
        except Exception as exc:
            tally.errors[type(exc).__name__] += 1
            tally.failed("session raised", error=repr(exc)[:200])
            await asyncio.sleep(0.5)


# -- hostile clients -----------------------------------------------------------------


def ws_frame(payload: bytes, opcode: int = 2) -> bytes:
    """A masked client frame (a zero mask key: the payload goes as it is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def upgrade_request(port: int, who: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /?who={who} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def until_closed(ws: Any, within: float) -> tuple[int | None, float]:
    """Read (and drop) frames until the server closes; its close code and when."""
    from websockets.exceptions import ConnectionClosed

    t0 = time.monotonic()
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    return ws.close_code, time.monotonic() - t0


async def hostile_ws(
    port: int, who: str, attack: Callable[[Any], Awaitable[None]]
) -> dict[str, Any]:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    t0 = time.monotonic()
    ws = await ws_connect(
        url(port, who), compression=None, ping_interval=None, open_timeout=STEP, max_size=None
    )
    try:
        with contextlib.suppress(ConnectionClosed):
            await attack(ws)
        code, _ = await until_closed(ws, STAGE_TIMEOUT + STEP)
    finally:
        ws.transport.abort()
    return {"who": who, "code": code, "seconds": round(time.monotonic() - t0, 2)}


async def flood(ws: Any) -> None:
    for _ in range(int(RATE_MESSAGES) * 20):
        await ws.send(b"x")


async def oversize(ws: Any) -> None:
    await ws.send(b"o" * (MAX_SIZE + 1))


async def text(ws: Any) -> None:
    await ws.send("hello")


async def silent(ws: Any) -> None:
    pass


async def to_rtc_ready(ws: Any) -> None:
    await ws.send(HELLO)
    await ws.recv()
    await ws.send(READY)
    await ws.recv()


async def garbage(ws: Any) -> None:
    from aiosocker.rtc.envelope import MAGIC

    await to_rtc_ready(ws)
    await ws.send(MAGIC + b"\xff\x00garbage signaling")


async def defer_flood(ws: Any) -> None:
    await to_rtc_ready(ws)
    big = b"d" * (MAX_SIZE - 64)
    for _ in range(2 * MAX_MEMORY // len(big)):
        await ws.send(big)


async def bigsend(port: int) -> dict[str, Any]:
    """Walk to ``playing`` on a raw socket, then send big messages and never read."""
    t0 = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    sent = 0
    ended = "bound"
    try:
        writer.write(upgrade_request(port, "bigsend"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
        if b" 101 " not in head.split(b"\r\n")[0]:
            return {"who": "bigsend", "code": None, "error": head[:60].decode(errors="replace")}
        writer.write(ws_frame(HELLO))
        writer.write(ws_frame(READY))
        big = ws_frame(b"B" * (MAX_SIZE - 1024))
        # From here on nothing is read: the echoes pile up on the server's side.
        deadline = time.monotonic() + 3 * STEP
        while time.monotonic() < deadline:
            writer.write(big)
            sent += 1
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                ended = "stalled"  # the server stopped reading us
                break
            except OSError:
                ended = "reset"
                break
            await asyncio.sleep(2 / RATE_MESSAGES)
        # Wait for the server to drop us (its close frame cannot reach an unread socket).
        while time.monotonic() < deadline and not writer.transport.is_closing():
            try:
                writer.write(b"")
                await asyncio.wait_for(reader.read(1 << 16), 0.5)
            except TimeoutError:
                continue
            except OSError:
                break
            if reader.at_eof():
                break
    finally:
        writer.transport.abort()
    return {
        "who": "bigsend",
        "code": None,
        "sent_mib": round(sent * len(big) / 2**20, 1),
        "ended": ended,
        "seconds": round(time.monotonic() - t0, 2),
    }


async def slowloris(port: int) -> dict[str, Any]:
    """A request head that never ends: one byte a second; when does the server hang up?"""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /?who=slowloris HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-Slow: ".encode())
    dropped = False
    try:
        async with asyncio.timeout(SLOWLORIS_LIMIT + 5):
            reading = asyncio.ensure_future(reader.read())
            while not reading.done():
                with contextlib.suppress(OSError):
                    writer.write(b"z")
                await asyncio.wait([reading], timeout=1.0)
            with contextlib.suppress(OSError):
                reading.result()
            dropped = True
    except TimeoutError:
        pass
    finally:
        writer.transport.abort()
    return {"who": "slowloris", "dropped": dropped, "seconds": round(time.monotonic() - t0, 2)}


async def hostile_round(port: int) -> list[dict[str, Any]]:
    attacks: list[Awaitable[dict[str, Any]]] = [
        hostile_ws(port, "flood", flood),
        hostile_ws(port, "oversize", oversize),
        hostile_ws(port, "text", text),
        hostile_ws(port, "silent", silent),
        hostile_ws(port, "rtc-garbage", garbage),
        hostile_ws(port, "rtc-defer", defer_flood),
        bigsend(port),
        slowloris(port),
    ]
    results = await asyncio.gather(*attacks, return_exceptions=True)
    return [r if isinstance(r, dict) else {"who": "?", "error": repr(r)[:200]} for r in results]


# -- the process ---------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    plan = json.loads(args.plan)
    rng = random.Random(args.seed)
    tally = Tally(args.role)
    start = time.monotonic()
    deadline = start + plan["duration"]
    if args.role == "hostile":
        rounds = max(1, plan["hostile_rounds"])
        for r in range(rounds):
            await asyncio.sleep(
                max(0.0, start + 1 + r * plan["duration"] / rounds - time.monotonic())
            )
            tally.hostile += await hostile_round(args.port)
        return tally.to_json()
    session = ws_session if args.role == "ws" else rtc_session
    slots = [
        slot(session, args.port, random.Random(rng.random()), plan, tally, deadline)
        for _ in range(args.clients)
    ]
    await asyncio.gather(*slots)
    return tally.to_json()


def run() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak.clients")
    parser.add_argument("role", choices=("ws", "rtc", "hostile"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=0)
    parser.add_argument("--plan", required=True, help="the Plan, as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    raise_nofile(4096)
    if args.role != "ws":
        loopback_only()  # ICE on 127.0.0.1 only, as the server
    plan = json.loads(args.plan)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(plan["duration"] + GRACE + 4 * STEP):
            return await main(args)

    result = asyncio.run(bounded())
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    run()
