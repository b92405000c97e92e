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

from ..procs import ServerProcess, run_delay, udp_drops
from ..rtc_common import STAGE_TIMEOUT, rtc_config
from ..runner import log

if TYPE_CHECKING:
    import aiosocker

DC_PAYLOAD = 100
DC_HIGH_WATER = 64 * 1024
"""Both senders drop (count as lost) a tick's messages while more than this many bytes
wait in the WebRTC stack, as a game drops updates the link cannot take."""
DC_TICK_S = 0.005
"""Both senders run a 200 Hz loop: each tick sends the messages due at the paced rate
(socker batches a tick's messages into one DataChannel frame or a few)."""
DC_MAX_LOSS_PCT = 0.1
"""A paced rate passes when at most this share of its messages is lost."""
DC_MAX_LAG = 0.1
"""... and the sender kept its pace: it offered the last message at most this share of
the duration late (else the sending process, not the link, was the limit)."""


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


async def _paced(send: Any, buffered: Any, rate: float, duration: float) -> tuple[int, int, float]:
    """Offer ``rate`` messages per second for ``duration`` s with ``send(payload)``: a
    200 Hz loop sending the messages due at each tick (a tick that comes late sends
    what is due by then). While ``buffered()`` (bytes waiting in the WebRTC stack)
    exceeds :data:`DC_HIGH_WATER`, a tick's messages are dropped instead.

    Returns (messages offered, of which dropped by the sender, how late the last one
    went in s)."""
    loop = asyncio.get_running_loop()
    payload = bytes(DC_PAYLOAD)
    total = max(1, round(rate * duration))
    offered = dropped = 0
    start = due_at = loop.time()
    while offered < total:
        now = loop.time()
        if now - start > duration * 3 + 5:  # bounded, whatever the loop does
            break
        due = min(total, int(rate * (now - start)) + 1)
        if due > offered:
            if buffered() > DC_HIGH_WATER:
                dropped += due - offered
                offered = due
            else:
                while offered < due:
                    send(payload)
                    offered += 1
        due_at += DC_TICK_S
        delay = due_at - loop.time()
        if delay < 0:  # fell behind: the next tick sends what is due by then
            due_at, delay = loop.time(), 0.0
        await asyncio.sleep(delay)
    lag = max(0.0, loop.time() - (start + duration))
    return offered, dropped, lag


async def _settle(buffered: Any) -> None:
    """Let the stack drain (bounded: 1 s), then the last packets cross (0.25 s)."""
    for _ in range(200):
        if not buffered():
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.25)


async def raw_dc_trial(
    server: ServerProcess, rate: float, duration: float, limit_s: float
) -> DcSample:
    """Raw aiortc, unbatched: ``rate`` 100 B messages per second one way for
    ``duration`` s (:func:`_paced`), one ``channel.send()`` each, on a fresh peer."""
    peer = await asyncio.wait_for(raw_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    drops0 = udp_drops(server.pid)
    wait0 = run_delay(server.pid)
    try:
        channel = peer.channel

        def buffered() -> int:
            return int(channel.bufferedAmount)

        offered, dropped, lag = await _paced(channel.send, buffered, rate, duration)
        await _settle(buffered)
        await peer.ws.send("stats")
        stats = json.loads(await asyncio.wait_for(peer.ws.recv(), 5))
        drops = udp_drops(server.pid) - drops0
        cpu = server.cpu_seconds() - cpu0
        wait = run_delay(server.pid) - wait0
    finally:
        await peer.close()
    return DcSample.of(
        offered,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        rate=rate,
        duration=duration,
        lag=lag,
        frames=offered - dropped,
        dropped=dropped,
        udp_drops=drops,
        server_cpu_s=cpu,
        wait_s=wait,
    )


@dataclass(frozen=True)
class DcSample:
    """One paced trial: what was offered, what arrived, what the receiver spent."""

    rate: float
    """The paced rate offered, messages per second."""
    msgs_per_s: float
    """Messages delivered per second: received / (last arrival - first arrival)."""
    loss_pct: float
    sent: int
    """Messages offered (``send()`` calls, and messages the sender dropped)."""
    received: int
    lag_s: float = 0.0
    """How late the sender offered its last message (its loop fell behind)."""
    frames: int | None = None
    """DataChannel messages handed to aiortc (socker: after batching)."""
    dropped: int = 0
    """Messages dropped by the sender (the stack held > DC_HIGH_WATER bytes) or refused by
    socker's ``Channel.send``: offered, and lost."""
    udp_drops: int = 0
    """Datagrams the kernel dropped at the server's (the receiver's) UDP sockets during
    the trial (:func:`udp_drops`)."""
    server_cpu_us: float | None = None
    """The server's (receiver's) CPU time per message received, from ``/proc``."""
    duration: float = 0.0
    receiver_wait_ms: float = 0.0
    """How long the receiver waited, runnable, for a CPU during the trial
    (``/proc/<pid>/schedstat``): other work on the machine."""

    @property
    def passed(self) -> bool:
        """At most :data:`DC_MAX_LOSS_PCT` lost, and the sender kept its pace."""
        return self.loss_pct <= DC_MAX_LOSS_PCT and self.lag_s <= DC_MAX_LAG * self.duration

    @property
    def why(self) -> str:
        if self.lag_s > DC_MAX_LAG * self.duration:
            return "sender"
        return "ok" if self.loss_pct <= DC_MAX_LOSS_PCT else "loss"

    @classmethod
    def of(
        cls,
        sent: int,
        received: int,
        first_ns: int,
        last_ns: int,
        *,
        rate: float = 0.0,
        duration: float = 0.0,
        lag: float = 0.0,
        frames: int | None = None,
        dropped: int = 0,
        udp_drops: int = 0,
        server_cpu_s: float | None = None,
        wait_s: float = 0.0,
    ) -> DcSample:
        span = (last_ns - first_ns) / 1e9
        delivered = received / span if span > 0 else 0.0
        loss = (sent - received) / sent * 100 if sent else 0.0
        cpu = server_cpu_s * 1e6 / received if server_cpu_s is not None and received else None
        return cls(
            rate,
            delivered,
            loss,
            sent,
            received,
            lag,
            frames,
            dropped,
            udp_drops,
            cpu,
            duration,
            wait_s * 1000,
        )

    def brief(self) -> dict[str, Any]:
        """The trial in ``details``."""
        return {
            "rate": round(self.rate),
            "loss_pct": round(self.loss_pct, 3),
            "passed": self.passed,
            "why": self.why,
            "delivered_per_s": round(self.msgs_per_s),
            "sender_dropped": self.dropped,
            "receiver_udp_drops": self.udp_drops,
            "lag_ms": round(self.lag_s * 1000, 1),
            "frames": self.frames,
            "cpu_us": None if self.server_cpu_us is None else round(self.server_cpu_us, 2),
            "receiver_wait_ms": round(self.receiver_wait_ms, 1),
        }


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


async def socker_dc_trial(
    server: ServerProcess, rate: float, duration: float, limit_s: float
) -> DcSample:
    """socker, batched: ``rate`` 100 B messages per second one way for ``duration`` s
    (:func:`_paced`, as the raw side) with ``session.send()`` on the default
    (unordered, unreliable) channel, on a fresh connection. socker packs each tick's
    messages (one loop iteration) into one DataChannel frame or a few. Messages socker's
    ``Channel.send`` refuses count as lost (``Channel.dropped``)."""
    peer = await asyncio.wait_for(socker_open(server.port), limit_s)
    cpu0 = server.cpu_seconds()
    drops0 = udp_drops(server.pid)
    wait0 = run_delay(server.pid)
    try:
        channel = peer.session.channel()

        def buffered() -> int:
            return int(channel.buffered_amount)

        frames0 = channel.frames_sent
        offered, dropped, lag = await _paced(peer.session.send, buffered, rate, duration)
        await _settle(buffered)
        stats = await peer.stats()
        drops = udp_drops(server.pid) - drops0
        cpu = server.cpu_seconds() - cpu0
        wait = run_delay(server.pid) - wait0
    finally:
        await peer.close()
    return DcSample.of(
        offered,
        stats["count"],
        stats["first_ns"],
        stats["last_ns"],
        rate=rate,
        duration=duration,
        lag=lag,
        frames=channel.frames_sent - frames0,
        dropped=dropped + channel.dropped,
        udp_drops=drops,
        server_cpu_s=cpu,
        wait_s=wait,
    )
