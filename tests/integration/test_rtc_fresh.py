"""Fresh, not stale: latest-wins sending under a real overload, and the channel round trip.

Real aiortc peers on loopback, as in ``test_rtc.py``. The overload tests run their
receiver in a second process whose event loop is kept busy on purpose, so the sender
(this process) really outruns it; both read the same monotonic clock.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import statistics
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import aiosocker
from aiosocker.rtc import ChannelSpec, batch
from aiosocker.rtc.session import ClientSession, RtcSession, client_stages

from .rtc_helpers import (
    RawClient,
    RtcServers,
    ServerSide,
    StartServer,
    eventually,
    interface_fixture,  # noqa: F401 (the ``interface`` fixture)
    rtc_app,
    settle,
)

pytestmark = pytest.mark.usefixtures("interface")


@pytest.fixture
async def serve() -> AsyncIterator[StartServer]:
    """``rtc_helpers``' ``serve``, metered (``metrics=True``): the tests read the meters."""
    servers = RtcServers(metrics=True)
    yield servers.start
    await servers.close()


class Client:
    """socker's Python client in this process: ``scene`` -> rtc stages -> ``control``,
    with the session options the test gives; ``on_close(session)`` runs on a loss."""

    def __init__(
        self,
        conn: aiosocker.Connection,
        label: str = "game",
        on_close: Callable[[RtcSession], Any] | None = None,
        **options: Any,
    ) -> None:
        self.conn = conn
        self.got: list[bytes] = []
        self.closes: list[str | None] = []

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await self.session.ready()
            return True

        self.session: ClientSession = client_stages(conn, **options)
        self.session.on_message(label)(self.got.append)

        @self.session.on_close
        async def lost(session: RtcSession) -> None:
            self.closes.append(session.close_reason)
            if on_close is not None:
                await on_close(session)

        @conn.stage()
        def control(message: bytes) -> bool:
            return False


@asynccontextmanager
async def connect(url: str, **options: Any) -> AsyncIterator[Client]:
    async with aiosocker.connect(url) as conn:
        client = Client(conn, **options)
        await conn.send(b"hello")
        await eventually(lambda: client.session.opened >= 1, what="client open")
        yield client


async def renegotiate(session: RtcSession) -> None:
    await session.renegotiate()


def freeze(channel: Any) -> None:
    """The peer behind ``channel`` goes quiet: the channel sends nothing (PONGs included)
    and takes in nothing, while the WebSocket and the peer connection live on."""
    dc = channel.dc
    dc.send = lambda data: None
    dc.remove_all_listeners("message")
    # And its own watch stops: a frozen peer does not time the other side out and close
    # the channel itself (that would race the side under test, and win under load).
    channel._stop()


# -- latest wins: the mechanics ------------------------------------------------------------


async def test_send_latest_keeps_only_the_newest_per_key_while_congested(serve: Any) -> None:
    setup, srv = rtc_app(channels=[ChannelSpec("state", ordered=True, max_retransmits=None)])
    server = await serve(setup)
    async with connect(server.url, label="state") as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        channel = srv.session.channel()
        meter = srv.conns[0].meter
        assert meter is not None
        channel.max_buffered = 0  # any backlog counts as congestion
        # Two messages bigger than SCTP's first window: the second waits in the stack.
        big = b"x" * 60_000
        assert channel.send(big) and channel.send(big)
        await asyncio.sleep(0)  # the batch goes at the end of the loop iteration
        assert channel.congested
        for version in range(5):
            for key in ("a", "b", "c"):
                assert srv.session.send_latest(key, b"%s%d" % (key.encode(), version))
        await asyncio.sleep(0)
        # Nothing went while congested; one message waits per key; the rest were dropped.
        assert channel.latest_pending == 3
        assert channel.stale_dropped == 12 == meter.channel_dropped["state"]
        assert srv.session.send_latest("a", b"a5")  # still one per key, "a" still first
        assert (channel.latest_pending, channel.stale_dropped) == (3, 13)
        # The stack drains: the newest of each key goes, the longest-waiting key first.
        await eventually(lambda: len(cli.got) == 5, what="the newest of each key")
        assert cli.got == [big, big, b"a5", b"b4", b"c4"]
        assert channel.latest_pending == 0
        assert (channel.sent, channel.dropped) == (5, 0)
        assert meter.channel_out["state"] == 5
        # Uncongested, send_latest goes with the loop iteration's batch; a newer one for
        # the same key within the iteration replaces it.
        channel.max_buffered = 1 << 20
        assert srv.session.send_latest("a", b"a6") and srv.session.send_latest("a", b"a7")
        assert srv.session.send_latest("b", b"b5", "state")
        await eventually(lambda: len(cli.got) == 7, what="two more")
        assert cli.got[5:] == [b"a7", b"b5"]
        assert channel.stale_dropped == 14 == meter.channel_dropped["state"]


async def test_send_latest_bounds_the_keys_and_refuses_when_closed(serve: Any) -> None:
    setup, srv = rtc_app()
    server = await serve(setup)
    async with connect(server.url):
        await eventually(lambda: srv.session.opened == 1, what="server open")
        channel = srv.session.channel()
        assert channel.max_latest == batch.DEFAULT_MAX_LATEST == 1024
        channel.max_latest = 3
        channel.max_buffered = 0
        assert channel.send(b"x" * 60_000) and channel.send(b"x" * 60_000)
        await asyncio.sleep(0)
        assert all(srv.session.send_latest(key, b"v") for key in range(3))
        assert not srv.session.send_latest(3, b"v")  # a fourth key: refused, counted
        assert srv.session.send_latest(0, b"w")  # a waiting key still takes a newer one
        assert (channel.latest_pending, channel.dropped, channel.stale_dropped) == (3, 1, 1)
        with pytest.raises(ValueError, match="max_latest must be an int >= 1"):
            channel.max_latest = 0
        channel.close()
        assert not srv.session.send_latest(0, b"late")
        # What still waited when the channel closed counts as dropped too.
        assert (channel.latest_pending, channel.dropped) == (0, 5)
        with pytest.raises(LookupError, match="no channel 'nope'"):
            srv.session.send_latest(0, b"v", "nope")


# -- latest wins under a real overload ---------------------------------------------------

KEYS = 200  # entities, each updated every tick
TICK = 0.002  # the sender's loop: ~500 ticks a second, KEYS updates each
SEND_FOR = 3.0  # seconds of overload
MAX_BUFFERED = 32 * 1024
RECORD = struct.Struct("!HIdQ")  # key, version, made at (monotonic s), sender's byte clock
PAYLOAD = 48  # bytes per update (the record, padded): ~4.8 MB/s offered
BUSY, IDLE = 0.016, 0.004  # the receiver's loop is blocked 80 % of the time

RECEIVER = r"""
import asyncio, json, struct, sys, time
import aiosocker
from aiosocker.rtc import client_stages

RECORD = struct.Struct("!HIdQ")


async def main(url: str, busy: float, idle: float) -> None:
    got = []
    stop = asyncio.Event()
    async with aiosocker.connect(url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            await rtc.ready()
            return True

        rtc = client_stages(conn)

        @rtc.on_message()
        def update(message: bytes) -> None:
            got.append((time.monotonic(), *RECORD.unpack_from(message)))

        @conn.stage()
        def control(message: bytes) -> bool:
            if message == b"stop":
                stop.set()
            return False

        async def busy_loop() -> None:
            while True:  # blocks the loop busy / (busy + idle) of the time
                time.sleep(busy)
                await asyncio.sleep(idle)

        await conn.send(b"hello")
        task = asyncio.ensure_future(busy_loop())
        await asyncio.wait_for(stop.wait(), 120)
        task.cancel()
    json.dump(got, sys.stdout)


asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
"""


class ByteClock:
    """The sender's byte clock B(t): bytes its channel handed to aiortc's
    ``RTCDataChannel.send``, with the time of each hand-over."""

    def __init__(self, dc: Any) -> None:
        self.total = 0
        self.times: list[float] = [0.0]
        self.totals: list[int] = [0]
        send = dc.send

        def counting(data: bytes) -> None:
            send(data)
            self.total += len(data)
            self.times.append(time.monotonic())
            self.totals.append(self.total)

        dc.send = counting

    def at(self, t: float) -> int:
        """B(t): bytes handed over at or before ``t``."""
        return self.totals[bisect.bisect_right(self.times, t) - 1]


async def overload(server: aiosocker.Server, srv: ServerSide, *, latest: bool) -> dict[str, Any]:
    """Run the receiver process; push KEYS updates a tick at it for SEND_FOR seconds
    (``send_latest``, or plain ``send`` with no limit: aiortc's own queueing); stop it
    once the link drained (bounded); return what both sides saw."""
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, server.url, str(BUSY), str(IDLE),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await eventually(lambda: bool(srv.sessions) and srv.session.opened == 1, within=15)
        session = srv.session
        channel = session.channel()
        channel.max_buffered = MAX_BUFFERED if latest else 1 << 40
        clock = ByteClock(channel.dc)
        pad = bytes(PAYLOAD - RECORD.size)
        version = max_pending = 0
        start = time.monotonic()
        while (now := time.monotonic()) - start < SEND_FOR:
            version += 1
            for key in range(KEYS):
                update = RECORD.pack(key, version, now, clock.total) + pad
                sent = session.send_latest(key, update) if latest else session.send(update)
                assert sent
            max_pending = max(max_pending, channel.latest_pending)
            await asyncio.sleep(TICK)
        sent_until = time.monotonic()
        await settle(lambda: not channel.congested and not channel.latest_pending, within=5)
        await asyncio.sleep(0.3)
        await srv.conns[0].send(b"stop")
        out, _ = await asyncio.wait_for(receiver.communicate(), 30)
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
    assert receiver.returncode == 0
    got = [tuple(row) for row in json.loads(out)]
    assert got, "nothing arrived"
    meter = srv.conns[0].meter
    assert meter is not None
    return {
        "got": got,
        "made": version * KEYS,
        "version": version,
        "lags": [clock.at(t) - b0 for t, _, _, _, b0 in got],
        "ages": [t - made for t, _, _, made, _ in got if t <= sent_until],
        "max_pending": max_pending,
        "channel": channel,
        "meter_dropped": meter.channel_dropped["game"],
    }


def window(max_pending: int) -> int:
    """One congestion window, in bytes: what may be ahead of an update on its way."""
    return (
        MAX_BUFFERED  # the stack's bytes, queued and in flight, when it was handed over
        + max_pending * (PAYLOAD + 1)  # the keys waiting longer, which go before it
        + 2 * (batch.DEFAULT_MAX_SIZE + 1)  # the frame that crossed the mark, its own
        + 1200  # an SCTP chunk past the window
    )


def summary(what: str, report: dict[str, Any]) -> str:
    ages = sorted(report["ages"])
    p50, p99 = statistics.median(ages), ages[int(len(ages) * 0.99)]
    return (
        f"{what}: {len(report['got'])} of {report['made']} updates arrived, lag max"
        f" {max(report['lags'])} B (window {window(report['max_pending'])} B), age p50/p99/max"
        f" {p50 * 1e3:.0f}/{p99 * 1e3:.0f}/{ages[-1] * 1e3:.0f} ms"
    )


async def test_latest_wins_under_a_real_overload(serve: Any) -> None:
    """~4.8 MB/s of position updates offered to a receiver whose event loop is busy 80 %
    of the time: when an update arrives, the sender has handed over at most one
    congestion window more than it had when it made the update (the update lags the
    newest by at most one window), the drops are counted, and every key's newest value
    arrives once the link drains."""
    setup, srv = rtc_app()
    server = await serve(setup)
    report = await overload(server, srv, latest=True)
    channel = report["channel"]
    print(f"\n{summary('send_latest', report)}, {channel.stale_dropped} stale dropped")
    assert max(report["lags"]) <= window(report["max_pending"])
    assert report["max_pending"] <= KEYS  # one waiting message per key, never more
    newest: dict[int, int] = {}
    for _, key, version, _, _ in report["got"]:
        newest[key] = max(newest.get(key, 0), version)
    assert newest == dict.fromkeys(range(KEYS), report["version"])
    # Really overloaded: most updates were superseded before they left, and counted.
    assert channel.stale_dropped > 0, channel.stale_dropped  # congestion did happen
    assert channel.sent + channel.stale_dropped + channel.dropped == report["made"]
    assert report["meter_dropped"] == channel.stale_dropped + channel.dropped
    assert channel.received == 0 and srv.close_calls == []


async def test_plain_sends_under_the_same_overload_lag_far_more(serve: Any) -> None:
    """The control: the same overload with plain ``send`` and no limit queues in aiortc,
    and updates arrive many windows late (seconds, growing while it lasts)."""
    setup, srv = rtc_app()
    server = await serve(setup)
    report = await overload(server, srv, latest=False)
    print(f"\n{summary('plain send', report)}")
    assert max(report["lags"]) > window(KEYS)  # past the bound latest-wins keeps


# -- the channel round trip --------------------------------------------------------------


async def test_rtt_is_measured_on_both_sides_and_pings_never_reach_the_app(serve: Any) -> None:
    setup, srv = rtc_app(ping_interval=0.05)
    server = await serve(setup)
    async with connect(server.url, ping_interval=0.05) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        server_ch, client_ch = srv.session.channel(), cli.session.channel()
        await eventually(
            lambda: server_ch.pongs_received >= 3 and client_ch.pongs_received >= 3,
            what="three round trips each way",
        )
        for session, channel in ((srv.session, server_ch), (cli.session, client_ch)):
            assert session.rtt is not None and session.rtt > 0
            assert channel.rtt is not None and channel.rtt > 0
            assert channel.pings_sent >= channel.pongs_received >= 3
            # Control frames are the channel's own: no message, no frame, no meter count.
            assert (channel.received, channel.frames_received) == (0, 0)
        print(f"\nrtt on loopback: server {srv.session.rtt * 1e3:.2f} ms,"
              f" client {cli.session.rtt * 1e3:.2f} ms")  # fmt: skip
        assert srv.got["game"] == [] == cli.got
        meter = srv.conns[0].meter
        assert meter is not None and meter.channel_in["game"] == 0
        assert srv.close_calls == [] and cli.closes == []
        # Messages still flow next to the PINGs.
        assert srv.session.send(b"hi") and cli.session.send(b"ho")
        await eventually(lambda: cli.got == [b"hi"] and srv.got["game"] == [b"ho"])


async def test_a_side_that_does_not_ping_still_answers(serve: Any) -> None:
    setup, srv = rtc_app(ping_interval=0.05)
    server = await serve(setup)
    async with connect(server.url, ping_interval=None) as cli:
        await eventually(lambda: srv.session.rtt is not None, what="the server's rtt")
        await asyncio.sleep(0.2)
        assert cli.session.rtt is None and cli.session.channel().pings_sent == 0


@pytest.mark.parametrize("silent", ["client", "server"])
async def test_a_peer_that_stops_answering_is_reported_within_the_timeout(
    serve: Any, silent: str
) -> None:
    """One side's channel goes quiet (it neither sends, PONGs included, nor reads) while
    the WebSocket lives: the other side reports it after channel_timeout, not aiortc's
    ~30 s; its on_close hooks run with the reason, and renegotiating brings fresh
    channels."""
    timeout, interval = 0.5, 0.1
    options = {"ping_interval": interval, "channel_timeout": timeout}
    hearing = "server" if silent == "client" else "client"
    setup, srv = rtc_app(on_close=renegotiate if hearing == "server" else None, **options)
    server = await serve(setup)
    on_close = renegotiate if hearing == "client" else None
    async with connect(server.url, on_close=on_close, **options) as cli:
        await eventually(lambda: srv.session.opened == 1, what="server open")
        sessions = {"server": srv.session, "client": cli.session}
        await eventually(lambda: sessions[hearing].rtt is not None, what="a first round trip")
        assert srv.close_calls == [] and cli.closes == []
        freeze(sessions[silent].channel())
        frozen = time.monotonic()
        closes: Callable[[], list[Any]] = (
            (lambda: srv.close_calls) if hearing == "server" else (lambda: cli.closes)
        )
        await eventually(lambda: len(closes()) == 1, what="the silence reported", within=10)
        took = time.monotonic() - frozen
        print(f"\n{hearing} reported its silent peer after {took * 1e3:.0f} ms"
              f" (channel_timeout {timeout * 1e3:.0f} ms)")  # fmt: skip
        # No PONG for channel_timeout since the first PING left unanswered, which went
        # at most one ping_interval after the last PONG.
        assert timeout - interval <= took  # never early; late only by the load
        reason = sessions[hearing].close_reason
        assert reason is not None
        assert re.fullmatch(
            r"channel 'game' did not answer PINGs for 0\.5\d* s \(channel_timeout=0\.5 s\)",
            reason,
        ), reason
        # The rtc layer's renegotiation applies: fresh channels, and they work.
        await eventually(
            lambda: srv.session.opened == 2 and cli.session.opened == 2, what="renegotiation"
        )
        assert srv.session.send(b"fresh")
        await eventually(lambda: cli.got == [b"fresh"], what="a message on the new channel")


async def test_no_timeout_for_a_peer_that_never_speaks_ping(serve: Any) -> None:
    """A peer that never sends a control frame (another implementation, or an older
    one) gets PINGs it may ignore; its silence is not taken for a loss."""
    setup, srv = rtc_app(ping_interval=0.05, channel_timeout=0.2)
    server = await serve(setup)
    raw = await RawClient.connect(server.url)
    frames: list[bytes] = []
    try:
        await raw.hello()
        await raw.ready()
        await raw.receive_offer()
        await raw.answer()
        await raw.confirm_open()
        raw.channels["game"].on("message", frames.append)
        await asyncio.sleep(1.0)  # five timeouts
        assert srv.close_calls == [] and srv.session.is_open
        assert srv.session.rtt is None
        pings = [batch.control(frame) for frame in frames]
        assert len(pings) >= 5 and all(p is not None and p.kind == batch.PING for p in pings)
    finally:
        await raw.aclose()


async def test_ping_options_are_checked(serve: Any) -> None:
    setup, _ = rtc_app()
    server = await serve(setup)
    async with aiosocker.connect(server.url) as conn:
        with pytest.raises(ValueError, match=r"ping_interval must be > 0 seconds"):
            client_stages(conn, ping_interval=0)
        with pytest.raises(ValueError, match=r"channel_timeout must be > 0 seconds"):
            client_stages(conn, channel_timeout=float("inf"))
        with pytest.raises(TypeError, match=r"channel_timeout is a number of seconds or None"):
            client_stages(conn, channel_timeout="10")  # type: ignore[arg-type]
