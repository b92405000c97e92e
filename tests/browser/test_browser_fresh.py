"""Fresh, not stale, in a real headless Chromium: ``sendLatest`` under a real overload,
the channel round trip (``rtc.rtt``), silent peers reported on both sides, and the
control frames and ``Latest`` of ``batch.js`` against Python's, byte for byte.

The page (``FRESH_PAGE``, served at ``/page``) imports ``/aiosocker.js`` from the server
under test; the tests drive it with ``page.evaluate`` and read ``window.R``.
"""

from __future__ import annotations

import asyncio
import bisect
import re
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

import aiosocker
from aiosocker import Route
from aiosocker.rtc import batch
from aiosocker.rtc.session import RtcSession, server_stages

from .conftest import PAGE_PATH, TIMINGS, Tab, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRESH_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>socker fresh-state test page</title></head>
<body>
<script type="module">
import * as aiosocker from "/aiosocker.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
const wall = () => performance.timeOrigin + performance.now();

// scene -> rtc stages -> control; options go to clientStages.
async function start(options = {}, { renegotiateOnClose = false } = {}) {
  const R = window.R = { opened: 0, closes: [], got: [], errors: [] };
  const conn = window.conn = new aiosocker.Connection("/");
  let rtc;
  conn.stage("scene", async () => { await rtc.ready(); return true; });
  rtc = window.rtc = aiosocker.rtc.clientStages(conn, options);
  conn.stage("control", () => false);
  rtc.onMessage((message) => { R.got.push(hex(message)); });
  rtc.onOpen((session) => { R.opened = session.opened; });
  rtc.onClose((session, why) => {
    R.closes.push({ why, closeReason: session.closeReason, at: performance.now() });
    if (renegotiateOnClose) session.renegotiate();
  });
  conn.onError((err) => R.errors.push(`${err.name}: ${err.message}`));
  await conn.open();
  conn.send(new TextEncoder().encode("hello"));
}

// The channel's byte clock: bytes handed to RTCDataChannel.send, with the wall time.
function byteClock(channel) {
  const clock = { total: 0, log: [] };
  const send = channel.dc.send.bind(channel.dc);
  channel.dc.send = (data) => {
    send(data);
    clock.total += data.byteLength;
    clock.log.push([wall(), clock.total]);
  };
  return clock;
}

// keys updates a tick, each the key's newest state, for forMs: latest wins.
async function overload({ keys, tickMs, forMs, payload }) {
  const channel = window.rtc.channel();
  const clock = byteClock(channel);
  let version = 0, maxPending = 0, maxBuffered = 0;
  const started = performance.now();
  while (performance.now() - started < forMs) {
    version++;
    const madeAt = wall();
    for (let key = 0; key < keys; key++) {
      const update = new Uint8Array(payload);
      const view = new DataView(update.buffer);
      view.setUint16(0, key);
      view.setUint32(2, version);
      view.setFloat64(6, madeAt);
      view.setFloat64(14, clock.total);
      if (!window.rtc.sendLatest(key, update)) throw new Error(`update ${key} refused`);
    }
    maxPending = Math.max(maxPending, channel.latestPending);
    maxBuffered = Math.max(maxBuffered, channel.bufferedAmount);
    await sleep(tickMs);
  }
  const sentUntil = wall();
  // Until the link drained (bounded): every key's newest version is on its way.
  for (let i = 0; i < 500 && (channel.latestPending || channel.bufferedAmount); i++) {
    await sleep(10);
  }
  return {
    version, made: version * keys, maxPending, maxBuffered, sentUntil, log: clock.log,
    sent: channel.sent, staleDropped: channel.staleDropped, dropped: channel.dropped,
    latestPending: channel.latestPending,
  };
}

// One more update per key, on an idle link.
function finalRound(keys, version, payload) {
  for (let key = 0; key < keys; key++) {
    const update = new Uint8Array(payload);
    const view = new DataView(update.buffer);
    view.setUint16(0, key);
    view.setUint32(2, version);
    view.setFloat64(6, wall());
    window.rtc.sendLatest(key, update);
  }
}

function each(inputs, fn) {
  return inputs.map((input) => {
    try {
      return { ok: fn(input) };
    } catch (err) {
      return { error: err.name, message: err.message };
    }
  });
}

window.T = { aiosocker, hex, unhex, each, start, overload, finalRound };
window.pageReady = true;
</script>
</body></html>
"""

ROUTES = {PAGE_PATH: Route.html(FRESH_PAGE)}
UPDATE = struct.Struct("!HIdd")  # key, version, made at (wall ms), the page's byte clock


class App:
    """The server: ``hello`` (sends ``scene``) -> rtc stages -> ``control``."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sessions: list[RtcSession] = []
        self.got: list[tuple[float, bytes]] = []
        self.closes: list[str | None] = []
        self.on_close: Callable[[RtcSession], Any] | None = None

    def setup(self, conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=5)
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        session = server_stages(conn, timeout=5, **self.options)
        self.sessions.append(session)

        @session.on_message()
        def game(message: bytes) -> None:
            self.got.append((time.time() * 1000, message))

        @session.on_close
        async def lost(session: RtcSession) -> None:
            self.closes.append(session.close_reason)
            if self.on_close is not None:
                await self.on_close(session)

        @conn.stage()
        def control(message: bytes) -> bool:
            return False

    @property
    def session(self) -> RtcSession:
        return self.sessions[-1]


async def started(tab: Tab, options: dict[str, Any], **page: Any) -> None:
    await tab.eval("([options, page]) => T.start(options, page)", [options, page])
    await tab.wait_for(
        "window.R.opened >= 1 && window.conn.current === 'control'", what="the channels open"
    )


def freeze(channel: Any) -> None:
    """The server's channel goes quiet: it sends nothing (PONGs included), reads nothing,
    while the WebSocket and the peer connection live on (as ``freeze`` in
    ``tests/integration/test_rtc_fresh.py``)."""
    dc = channel.dc
    dc.send = lambda data: None
    dc.remove_all_listeners("message")
    # And its own watch stops: a frozen server does not time the page out and close the
    # channel itself (that would race the side under test, and win under load).
    channel._stop()


# -- sendLatest under a real overload --------------------------------------------------------

KEYS, TICK_MS, FOR_MS, PAYLOAD = 200, 4, 2500, 48
MAX_BUFFERED = 32 * 1024
BUSY, IDLE = 0.016, 0.004  # the server's loop is blocked 80 % of the time


async def busy_loop(stop: asyncio.Event) -> None:
    while not stop.is_set():
        time.sleep(BUSY)  # noqa: ASYNC251 (blocking the loop is the point)
        await asyncio.sleep(IDLE)


async def test_send_latest_in_the_page_under_a_real_overload(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """The page offers ~2.4 MB/s of position updates to a server whose event loop is busy
    80 % of the time: the stale ones are dropped and counted, at most one per key waits,
    what arrives lags the page by at most one congestion window, and every key's newest
    value arrives once the link drains."""
    app = App()
    server = await start_server(app.setup, routes=ROUTES)
    tab = await open_page(await launch("loopback"), server)
    await started(tab, {"maxBuffered": MAX_BUFFERED})
    stop = asyncio.Event()
    busy = asyncio.ensure_future(busy_loop(stop))
    try:
        report = await tab.eval(
            "(o) => T.overload(o)",
            {"keys": KEYS, "tickMs": TICK_MS, "forMs": FOR_MS, "payload": PAYLOAD},
        )
    finally:
        stop.set()
        await busy
    await asyncio.sleep(0.3)  # what was on its way
    updates = [(at, *UPDATE.unpack_from(message)) for at, message in app.got]
    times = [t for t, _ in report["log"]]
    totals = [int(n) for _, n in report["log"]]

    def clock(t: float) -> int:  # the page's byte clock at wall time t
        i = bisect.bisect_right(times, t) - 1
        return totals[i] if i >= 0 else 0

    lags = [clock(at) - b0 for at, _, _, _, b0 in updates]
    ages = sorted(at - made for at, _, _, made, _ in updates if at <= report["sentUntil"])
    newest: dict[int, int] = {}
    for _, key, version, _, _ in updates:
        newest[key] = max(newest.get(key, 0), version)
    TIMINGS.append(
        (
            "sendLatest under overload: age p50",
            ages[len(ages) // 2],
            f"p99 {ages[int(len(ages) * 0.99)]:.0f} ms, max {ages[-1]:.0f} ms; lag max"
            f" {max(lags):.0f} B; {len(updates)} of {report['made']} arrived,"
            f" {report['staleDropped']} stale dropped; max bufferedAmount {report['maxBuffered']}",
        )
    )
    # Stale updates were dropped and counted; at most one per key waited.
    assert report["latestPending"] == 0 and report["maxPending"] <= KEYS
    assert report["staleDropped"] > report["made"] // 5, report
    assert report["sent"] + report["staleDropped"] + report["dropped"] == report["made"]
    assert len(updates) <= report["sent"]  # an unreliable channel may lose some
    # The newest versions arrived (all but what the unreliable channel lost).
    assert sum(v == report["version"] for v in newest.values()) >= KEYS // 2, newest
    # The bound: what the stack may hold ahead of an update. Chromium does not tell
    # what its SCTP has in flight; the receiver's window bounds it (aiortc: 1 MiB).
    window = (
        MAX_BUFFERED  # bufferedAmount when the update was handed over
        + KEYS * (PAYLOAD + 1)  # the keys that waited longer and went first
        + 2 * (batch.DEFAULT_MAX_SIZE + 1)  # the frame that crossed the mark, its own
        + 1024 * 1024  # in flight
    )
    assert max(lags) <= window, (max(lags), window)
    # On an idle link, the next state of every key arrives.
    app.got.clear()
    await tab.eval(f"T.finalRound({KEYS}, {report['version'] + 1}, {PAYLOAD})")
    await eventually(lambda: len(app.got) == KEYS, "the final round")
    assert sorted(UPDATE.unpack_from(m)[:2] for _, m in app.got) == [
        (key, report["version"] + 1) for key in range(KEYS)
    ]


# -- the round trip, and silent peers ------------------------------------------------------


async def test_rtt_in_the_page_and_on_the_server(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    app = App(ping_interval=0.05)
    server = await start_server(app.setup, routes=ROUTES)
    tab = await open_page(await launch("loopback"), server)
    await started(tab, {"pingInterval": 50})
    await tab.wait_for(
        "window.rtc.channel().pongsReceived >= 3", what="three round trips from the page"
    )
    await eventually(lambda: app.session.channel().pongs_received >= 3, "three from the server")
    page = await tab.eval(
        "({rtt: window.rtc.rtt, channelRtt: window.rtc.channel().rtt,"
        " received: window.rtc.channel().received, got: window.R.got.length,"
        " pings: window.rtc.channel().pingsSent, closes: window.R.closes.length})"
    )
    assert page["rtt"] > 0 and page["channelRtt"] > 0, page
    assert page["pings"] >= 3 and page["received"] == 0 == page["got"] == page["closes"]
    rtt = app.session.rtt
    assert rtt is not None and rtt > 0
    channel = app.session.channel()
    assert channel.received == channel.frames_received == 0 and app.got == []
    TIMINGS.append(("channel rtt, page", page["rtt"], f"server {rtt * 1e3:.2f} ms"))
    # Messages still flow next to the PINGs.
    assert app.session.send(b"hi")
    await tab.wait_for("window.R.got.length === 1", what="a message")
    assert await tab.eval("window.R.got") == [b"hi".hex()]


async def test_the_page_reports_a_silent_server(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """The server's channel goes quiet while the WebSocket lives: the page's onClose runs
    after channelTimeout with the reason, and renegotiating brings fresh channels."""
    app = App()
    server = await start_server(app.setup, routes=ROUTES)
    tab = await open_page(await launch("loopback"), server)
    await started(tab, {"pingInterval": 100, "channelTimeout": 500}, renegotiateOnClose=True)
    await tab.wait_for("window.rtc.rtt !== null", what="a first round trip")
    frozen = await tab.eval("performance.now()")
    freeze(app.session.channel())
    await tab.wait_for("window.R.closes.length >= 1", within_ms=10000, what="the page's onClose")
    (close,) = await tab.eval("window.R.closes")
    took = close["at"] - frozen
    TIMINGS.append(("silent server reported by the page", took, "channelTimeout 500 ms"))
    assert took >= 400, took  # not before channelTimeout; the wait above bounds it
    assert close["why"] == close["closeReason"], close
    assert re.fullmatch(
        r"channel 'game' did not answer PINGs for 0\.5\d* s \(channelTimeout=500 ms\)",
        close["why"],
    ), close
    await tab.wait_for("window.R.opened >= 2", what="renegotiation")
    await eventually(lambda: len(app.sessions) == 1 and app.session.opened == 2, "server reopen")
    assert app.session.send(b"fresh")
    await tab.wait_for("window.R.got.includes('6672657368')", what="a message on the new channel")


async def test_the_server_reports_a_silent_page(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """The page stops answering PINGs: the server reports it after channel_timeout, its
    on_close hooks run with the reason, and its renegotiation reopens the channels."""
    app = App(ping_interval=0.1, channel_timeout=0.5)

    async def renegotiate(session: RtcSession) -> None:
        await session.renegotiate()

    app.on_close = renegotiate
    server = await start_server(app.setup, routes=ROUTES)
    tab = await open_page(await launch("loopback"), server)
    await started(tab, {"pingInterval": None})  # the page only answers; then stops
    await eventually(lambda: app.session.rtt is not None, "a first round trip")
    await tab.eval("window.rtc.channel()._control = () => {}")  # no more PONGs
    frozen = time.monotonic()
    await eventually(lambda: len(app.closes) == 1, "the server's on_close", within=10)
    took = time.monotonic() - frozen
    TIMINGS.append(("silent page reported by the server", took * 1e3, "channel_timeout 0.5 s"))
    assert took >= 0.4, took  # not before channel_timeout; eventually() bounds it
    reason = app.closes[0]
    assert reason is not None and re.fullmatch(
        r"channel 'game' did not answer PINGs for 0\.5\d* s \(channel_timeout=0\.5 s\)", reason
    ), reason
    await tab.wait_for("window.R.opened >= 2", what="renegotiation")
    assert await tab.eval("window.R.closes.length") <= 1


# -- the codec against Python's ------------------------------------------------------------


async def test_control_frames_and_latest_match_python(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    server = await start_server(lambda conn: None, routes=ROUTES)
    tab = await open_page(await launch("loopback"), server)
    ids = [0, 1, 255, 0x0102030405060708, 2**53 - 1, 2**53 + 1, 2**64 - 1]
    encoded = await tab.eval(
        "(ids) => ids.map((id) => [T.hex(T.aiosocker.batch.ping(BigInt(id))),"
        " T.hex(T.aiosocker.batch.pong(BigInt(id)))])",
        [str(i) for i in ids],
    )
    assert encoded == [[batch.ping(i).hex(), batch.pong(i).hex()] for i in ids]
    # Golden frames (docs/protocol.md, section 5).
    assert batch.ping(1).hex() == "b20000000000000001"
    assert batch.pong(0x0102030405060708).hex() == "b30102030405060708"
    frames = [
        batch.ping(7), batch.pong(2**64 - 1), b"\xb2", b"\xb3" + bytes(9), b"\xb2" + bytes(7),
        b"\xb0hi", b"\xb1\x01a", b"", b"\xb4" + bytes(8),
    ]  # fmt: skip
    verdicts = await tab.eval(
        "(frames) => T.each(frames, (f) => { const c = T.aiosocker.batch.control(T.unhex(f));"
        " return c && [c.type, c.kind, c.id.toString()]; })",
        [f.hex() for f in frames],
    )
    for frame, verdict in zip(frames, verdicts, strict=True):
        try:
            expected = batch.control(frame)
        except batch.BatchError:
            assert verdict.get("error") == "BatchError", (frame.hex(), verdict)
        else:
            want = expected and [expected.name, expected.kind, str(expected.id)]
            assert verdict == {"ok": want}, frame.hex()
    unpacked = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.batch.unpack(T.unhex(f)).map(T.hex))",
        [f.hex() for f in frames[:2]],
    )
    assert [v.get("error") for v in unpacked] == ["BatchError", "BatchError"]
    # Latest: the same puts make the same frames.
    puts = [(k % 7, bytes([k]) * (k * 37 % 300)) for k in range(60)]
    js = await tab.eval(
        "(puts) => { const l = new T.aiosocker.batch.Latest(5); const out = [];"
        " for (const [k, m] of puts) { try { out.push(l.put(k, T.unhex(m))); }"
        " catch (e) { out.push(e.name); }"
        " if (out.length % 9 === 0) out.push(T.hex(l.take(400) ?? [])); }"
        " while (l.size) out.push(T.hex(l.take(400))); return out; }",
        [[k, m.hex()] for k, m in puts],
    )
    latest = batch.Latest(5)
    py: list[Any] = []
    for key, message in puts:
        try:
            py.append(latest.put(key, message))
        except OverflowError:
            py.append("RangeError")
        if len(py) % 9 == 0:
            py.append((latest.take(400) or b"").hex())
    while len(latest):
        frame = latest.take(400)
        assert frame is not None
        py.append(frame.hex())
    assert js == py
