"""The WebRTC clients (this process): the raw aiortc baseline and aiosocker's own flow.

The baseline is a minimal hand-written aiortc offer/answer over a raw ``websockets``
connection: the client offers one unordered, unreliable channel (``ordered=False,
maxRetransmits=0``), the server (kind ``raw-aiortc``: :mod:`bench.servers.raw_aiortc`)
answers. No STUN/TURN (``RTCConfiguration(iceServers=[])``).

socker's side is its own flow with its defaults: a ``aiosocker.connect`` client whose chain
is ``client_stages(conn)`` then ``control``, against kind ``socker-rtc``
(:mod:`bench.servers.aiosocker_rtc`); the client sends READY once connected, the server
offers socker's default channel (``game``: unordered, ``maxRetransmits=0``), the client
answers, both confirm with OPEN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..procs import ServerProcess, udp_drops
from ..rtc_common import STAGE_TIMEOUT, rtc_config
from ..runner import log

if TYPE_CHECKING:
    import aiosocker

DC_PAYLOAD = 100
DC_HIGH_WATER = 64 * 1024
DC_LOW_WATER = 16 * 1024
DC_TICK_S = 0.005
"""aiosocker's sender: one burst every 5 ms (a 200 Hz game loop)..."""
DC_BURST = 150
"""... of this many 100 B sends: 30,000 msg/s (3 MB/s) offered. On a quiet 2-core machine
the receiving aiortc takes up to ~45,000 without loss; beyond, or when other work keeps it
off the CPU for ~60 ms, it does not drain its UDP socket in time, the kernel drops
datagrams, and SCTP stalls (see docs/performance.md). 30,000 leaves some margin."""


# -- the raw baseline ------------------------------------------------------------------


@dataclass
class RawPeer:
    pc: Any
    ws: Any
    channel: Any
    open_ms: float

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def raw_open(port: int) -> RawPeer:
    """WebSocket connect -> offer/answer -> the channel is open; the time that took."""
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from websockets.asyncio.client import connect

    start = time.perf_counter()
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None)
    pc = RTCPeerConnection(rtc_config())
    peer = RawPeer(pc, ws, None, 0.0)
    try:
        channel = pc.createDataChannel("data", ordered=False, maxRetransmits=0)
        peer.channel = channel
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        local = pc.localDescription
        await ws.send(json.dumps({"sdp": local.sdp, "type": local.type}))
        answer = json.loads(await ws.recv())
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await opened.wait()
        peer.open_ms = (time.perf_counter() - start) * 1000
    except BaseException:
        await peer.close()
        raise
    return peer


async def raw_open_ms(server: ServerProcess, opens: int, limit_s: float) -> float:
    """Median of ``opens`` sequential opens (each peer closed before the next)."""
    times = []
    for _ in range(opens):
        peer = await asyncio.wait_for(raw_open(server.port), limit_s)
        times.append(peer.open_ms)
        await peer.close()
    return statistics.median(times)


async def raw_concurrent(server: ServerProcess, clients: int, limit_s: float) -> list[float | None]:
    """``clients`` opens started together: each one's ms, ``None`` if it did not open."""
    tasks = [asyncio.ensure_future(raw_open(server.port)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    times: list[float | None] = []
    for task in tasks:
        if task in done and task.exception() is None:
            peer = task.result()
            times.append(peer.open_ms)
            await peer.close()
        else:
            times.append(None)
    return times


async def raw_dc_rate(server: ServerProcess, duration: float, limit_s: float) -> DcSample:
    """Unbatched 100 B sends one way for ``duration`` s, paced by ``bufferedAmount``."""
    peer = await asyncio.wait_for(raw_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    try:
        channel = peer.channel
        channel.bufferedAmountLowThreshold = DC_LOW_WATER
        low = asyncio.Event()
        channel.on("bufferedamountlow", low.set)
        payload = bytes(DC_PAYLOAD)
        loop = asyncio.get_running_loop()
        sent = 0
        end = loop.time() + duration
        while loop.time() < end:
            if channel.bufferedAmount > DC_HIGH_WATER:
                low.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(low.wait(), max(0.001, end - loop.time()))
                continue
            channel.send(payload)
            sent += 1
            if sent % 32 == 0:
                await asyncio.sleep(0)
        if channel.bufferedAmount:  # let the queue drain (bounded)
            channel.bufferedAmountLowThreshold = 0
            low.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(low.wait(), 2.0)
        await asyncio.sleep(0.2)  # the last packets' way across
        await peer.ws.send("stats")
        stats = json.loads(await asyncio.wait_for(peer.ws.recv(), 5))
        drops = udp_drops(server.pid)
        cpu = server.cpu_seconds() - cpu0
    finally:
        await peer.close()
    return DcSample.of(
        sent,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        frames=sent,
        udp_drops=drops,
        server_cpu_s=cpu,
    )


@dataclass(frozen=True)
class DcSample:
    msgs_per_s: float
    """Messages delivered per second: received / (last arrival - first arrival)."""
    loss_pct: float
    sent: int
    received: int
    frames: int | None = None
    """DataChannel messages the sender handed to aiortc (socker: after batching)."""
    dropped: int = 0
    """Messages socker's ``Channel.send`` refused (counted in ``sent`` and lost)."""
    udp_drops: int = 0
    """:func:`udp_drops` of the server (the receiver) at the end of the sample."""
    server_cpu_us: float | None = None
    """The server's (receiver's) CPU time per message received, from ``/proc``."""

    @classmethod
    def of(
        cls,
        sent: int,
        received: int,
        first_ns: int,
        last_ns: int,
        *,
        frames: int | None = None,
        dropped: int = 0,
        udp_drops: int = 0,
        server_cpu_s: float | None = None,
    ) -> DcSample:
        span = (last_ns - first_ns) / 1e9
        rate = received / span if span > 0 else 0.0
        loss = (sent - received) / sent * 100 if sent else 0.0
        cpu = server_cpu_s * 1e6 / received if server_cpu_s is not None and received else None
        return cls(rate, loss, sent, received, frames, dropped, udp_drops, cpu)


# -- the socker side ------------------------------------------------------------------


@dataclass
class SockerPeer:
    conn: Any
    session: Any
    replies: asyncio.Queue[bytes]
    exit: contextlib.AsyncExitStack
    open_ms: float

    async def stats(self) -> dict[str, int]:
        await self.conn.send(b"stats")
        reply = await asyncio.wait_for(self.replies.get(), 5)
        result: dict[str, int] = json.loads(reply)
        return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.exit.aclose()


async def socker_open(port: int) -> SockerPeer:
    """``aiosocker.connect`` -> READY -> offer/answer -> OPEN both ways; the time that took.

    The clock starts before the WebSocket connect and stops in the session's ``on_open``
    hook (every channel open on both sides), as the raw client's starts before its
    connect and stops at its channel's ``open``.
    """
    import aiosocker
    from aiosocker.rtc.session import client_stages

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[float] = loop.create_future()
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    holder: dict[str, Any] = {}

    def setup(conn: aiosocker.Connection) -> None:
        session = holder["session"] = client_stages(conn, timeout=STAGE_TIMEOUT)

        @session.on_open
        def on_open(_: Any) -> None:
            if not opened.done():
                opened.set_result(time.perf_counter())

        @conn.stage()
        def control(message: bytes) -> bool:
            replies.put_nowait(message)
            return False

        @conn.on_close
        def on_close(conn: aiosocker.Connection, code: int, reason: str) -> None:
            if not opened.done():
                opened.set_exception(ConnectionError(f"closed {code} {reason!r} before open"))

    exit = contextlib.AsyncExitStack()
    start = time.perf_counter()
    try:
        conn = await exit.enter_async_context(
            aiosocker.connect(f"ws://127.0.0.1:{port}/", setup=setup)
        )
        peer = SockerPeer(conn, holder["session"], replies, exit, 0.0)
        await peer.session.ready()
        peer.open_ms = (await opened - start) * 1000
    except BaseException:
        await exit.aclose()
        raise
    return peer


async def socker_rtc_open_ms(server: ServerProcess, opens: int, limit_s: float) -> float:
    """``rtc_open_ms_python``: median of ``opens`` sequential socker opens (each peer
    closed before the next), as :func:`raw_open_ms`."""
    times = []
    for _ in range(opens):
        peer = await asyncio.wait_for(socker_open(server.port), limit_s)
        times.append(peer.open_ms)
        await peer.close()
    return statistics.median(times)


async def socker_concurrent(
    server: ServerProcess, clients: int, limit_s: float
) -> list[float | None]:
    """``rtc_concurrent_*``: ``clients`` socker opens started together, as
    :func:`raw_concurrent`; ``None`` for one that did not complete the rtc flow."""
    tasks = [asyncio.ensure_future(socker_open(server.port)) for _ in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    times: list[float | None] = []
    failures: dict[str, int] = {}
    for task in tasks:
        if task in done and task.exception() is None:
            peer = task.result()
            times.append(peer.open_ms)
            await peer.close()
        else:
            times.append(None)
            exc = task.exception() if task in done else TimeoutError("harness timeout")
            why = f"{type(exc).__name__}: {exc}"[:120]
            failures[why] = failures.get(why, 0) + 1
    for why, count in failures.items():
        log(f"socker-rtc: {count} of {clients} clients did not open: {why}")
    return times


async def socker_dc_rate(server: ServerProcess, duration: float, limit_s: float) -> DcSample:
    """``dc_msgs_per_s``: 100 B messages one way for ``duration`` s on the default
    (unordered, unreliable) channel with socker's batching, as a game sends them: a burst
    of :data:`DC_BURST` sends every :data:`DC_TICK_S`, each burst one frame or a few.

    Paced like the raw side: a tick's burst waits while more than ``DC_HIGH_WATER``
    bytes are queued in the WebRTC stack, so nothing is offered that the link cannot
    take. ``sent`` counts every ``send()`` call, so a message socker drops on its own
    (``Channel.dropped``) counts as lost.
    """
    peer = await asyncio.wait_for(socker_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    try:
        channel = peer.session.channel()
        payload = bytes(DC_PAYLOAD)
        send = peer.session.send
        loop = asyncio.get_running_loop()
        attempted = 0
        end = loop.time() + duration
        due = loop.time()
        while loop.time() < end:
            if channel.buffered_amount <= DC_HIGH_WATER:
                for _ in range(DC_BURST):
                    send(payload)
                attempted += DC_BURST
            due += DC_TICK_S
            delay = due - loop.time()
            if delay < 0:  # fell behind: no catch-up burst
                due, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
        for _ in range(400):  # let the queue drain (bounded: 2 s)
            if not channel.buffered_amount:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # the last packets' way across
        stats = await peer.stats()
        drops = udp_drops(server.pid)
        cpu = server.cpu_seconds() - cpu0
    finally:
        await peer.close()
    return DcSample.of(
        attempted,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        frames=channel.frames_sent,
        dropped=channel.dropped,
        udp_drops=drops,
        server_cpu_s=cpu,
    )
