"""aiosocker.js in a real headless Chromium against a real socker server (aiortc), on loopback.

The page (``pages/flow.html``) imports ``/aiosocker.js`` from the server under test and runs
the game flow: app stage ``scene`` -> ``rtc.ready()`` -> rtc stages -> final stage
``control``; the tests drive it with ``page.evaluate`` and read ``window.results``.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest

import aiosocker
from aiosocker.rtc import batch, envelope
from aiosocker.rtc.envelope import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    IceServer,
    IceServers,
    Message,
    Offer,
    Open,
    Ready,
    Renegotiate,
    Resume,
)
from aiosocker.rtc.peer import close_peer
from aiosocker.rtc.session import DEFAULT_CHANNELS, RtcSession, server_stages

from .conftest import (
    HIDE_MDNS_FEATURE,
    TIMINGS,
    Tab,
    command_line,
    disable_features_flags,
    eventually,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

COUNT = 200  # messages each way on the unreliable channel
CLIENT_HISTORY = ["scene", "rtc_offer", "rtc_open", "control"]
SERVER_HISTORY = ["hello", "rtc_ready", "rtc_answer", "rtc_open", "control"]


# -- the server side of the flow -----------------------------------------------------------


class FlowApp:
    """The server of the flow: ``hello`` (sends ``scene``) -> rtc stages -> ``control``.

    ``control`` takes commands from the page: ``burst:<label>:<n>`` sends n paced
    messages on a channel, ``reneg`` asks the page to renegotiate, ``echo:<x>`` and
    ``slow:<ms>`` are sent back over the WebSocket. ``after_scene`` frames follow the
    scene at once, so they reach the page while it is in ``rtc_offer``.
    """

    def __init__(
        self, channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS, after_scene: Sequence[bytes] = ()
    ) -> None:
        self.channels = tuple(channels)
        self.after_scene = tuple(after_scene)
        self.conns: list[aiosocker.Connection] = []
        self.sessions: list[RtcSession] = []
        self.got: dict[str, list[bytes]] = defaultdict(list)
        self.dropped = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def setup(self, conn: aiosocker.Connection) -> None:
        self.conns.append(conn)

        @conn.stage(timeout=5)
        async def hello(message: bytes) -> bool:
            assert message == b"hello", message
            await conn.send(b"scene")
            for frame in self.after_scene:
                await conn.send(frame)
            return True

        session = server_stages(conn, channels=self.channels, timeout=5)
        self.sessions.append(session)
        for spec in self.channels:
            session.on_message(spec.label)(self.got[spec.label].append)

        @conn.stage()
        async def control(message: bytes) -> bool:
            command, _, arg = message.decode().partition(":")
            if command == "burst":
                label, _, count = arg.partition(":")
                self._spawn(self.burst(session, label, int(count)))
            elif command == "reneg":
                await session.renegotiate()
            elif command == "echo":
                await conn.send(arg.encode())
            elif command == "slow":  # the page's handler sleeps arg ms per message
                for text in ("slow:30", "a", "slow:10", "b", "slow:1", "c"):
                    await conn.send(text.encode())
            return False

        @conn.on_close
        async def closed(conn: aiosocker.Connection, code: int, reason: str) -> None:
            for task in list(self.tasks):
                task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def burst(self, session: RtcSession, label: str, count: int) -> None:
        """``count`` messages, 10 per loop iteration every 5 ms, as a game sends them."""
        for i in range(count):
            if not session.send(b"s%d" % i, label):
                self.dropped += 1
            if i % 10 == 9:
                await asyncio.sleep(0.005)


async def start_flow(tab: Tab, *, within_ms: float = 8000, **options: Any) -> dict[str, Any]:
    """Run the page's flow until the channels are open and it is in its final stage."""
    await tab.eval("(options) => T.startFlow(options)", options)
    await tab.wait_for(
        "window.results.opened >= 1 && window.conn.current === 'control'",
        within_ms,
        what="the channels to open and the page to reach its final stage",
    )
    results: dict[str, Any] = await tab.eval("window.results")
    return results


async def exchange(tab: Tab, app: FlowApp, label: str, count: int = COUNT) -> tuple[int, int]:
    """``count`` paced messages each way on ``label``; returns how many arrived each way."""
    before_page = await tab.eval(f"(window.results.received[{label!r}] ?? []).length")
    app.got[label].clear()
    await tab.eval(f"T.sendText('burst:{label}:{count}')")
    dropped = await tab.eval(f"T.burst({label!r}, {count})")
    assert dropped == 0, "the page dropped messages on an idle loopback link"
    await tab.wait_for(
        f"(window.results.received[{label!r}] ?? []).length >= {before_page + count}",
        what=f"{count} messages from the server on {label!r}",
    )
    await eventually(lambda: len(app.got[label]) >= count, f"{count} messages on {label!r}")
    got_page = (await tab.eval(f"window.results.received[{label!r}]"))[before_page:]
    assert sorted(got_page) == sorted(f"s{i}" for i in range(count))
    assert sorted(app.got[label]) == sorted(b"c%d" % i for i in range(count))
    assert app.dropped == 0
    return len(got_page), len(app.got[label])


def candidates(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]


# -- the full flow, in both of Chromium's modes --------------------------------------------


@pytest.mark.parametrize("mode", ["mdns", "loopback"])
async def test_full_flow(mode: str, launch: Any, start_server: Any, open_page: Any) -> None:
    app = FlowApp()
    server = await start_server(app.setup)
    browser = await launch(mode)
    tab = await open_page(browser, server)

    results = await start_flow(tab)

    # Where the time went, for the summary: stage entries and signaling frame arrivals.
    t0 = results["t0"]
    stages = [f"{e['stage']}@{e['at'] - t0:.0f}" for e in await tab.eval("window.conn.history")]
    frames = [f"{h[6:8]}@{at:.0f}" for at, h in results["frames"] if h.startswith("ff53")]
    TIMINGS.append(
        (
            f"{mode}: WebSocket connect -> channels open",
            results["openTimes"][0],
            f"ws open@{results['wsOpenAt']:.0f} {' '.join(stages)}; signaling {' '.join(frames)}",
        )
    )
    assert results["labels"] == ["game"]
    assert results["errors"] == []
    assert results["gatherComplete"] == [True], "ICE gathering hit its bound on loopback"
    assert await tab.eval("window.rtc.isOpen && window.rtc.channel('game').isOpen")
    # Stage history, in order, on both sides; timestamps never go backwards.
    history = await tab.eval("window.conn.history")
    assert [entry["stage"] for entry in history] == CLIENT_HISTORY
    assert [entry["via"] for entry in history] == ["start", "advance", "advance", "advance"]
    times = [entry["at"] for entry in history]
    assert times == sorted(times)
    (conn,) = app.conns
    assert [entry.stage for entry in conn.stages.history] == SERVER_HISTORY

    lines = candidates(results["localSdps"][0])
    if mode == "mdns":
        # Chromium hid its addresses; the server dropped those candidates and still opened.
        assert lines and all(".local " in line for line in lines), lines
    else:
        # Raw addresses instead (this host's non-loopback interface; 127.0.0.1 only
        # where it is the only one).
        assert lines and not any(".local" in line for line in lines), lines
        flags = disable_features_flags(await command_line(browser))
        assert len(flags) == 1, f"Chromium honours only the last of {flags}"
        features = flags[0].partition("=")[2].split(",")
        assert HIDE_MDNS_FEATURE in features
        assert len(features) > 1, "Playwright's own disabled features were lost"

    assert await exchange(tab, app, "game") == (COUNT, COUNT)

    # Warm figures: READY -> channels open again, 5 times, in the same page.
    warm = []
    for n in range(2, 7):
        start = await tab.eval("performance.now()")
        await tab.eval("window.rtc.renegotiate()")
        await tab.wait_for(
            f"window.results.opened >= {n} && window.conn.current === 'control'",
            what=f"renegotiation {n - 1}",
        )
        warm.append(await tab.eval("window.results.openTimes.at(-1) + window.results.t0") - start)
    TIMINGS.append(
        (
            f"{mode}: READY -> channels open, warm, median of 5",
            statistics.median(warm),
            " ".join(f"{ms:.0f}" for ms in warm),
        )
    )
    assert await exchange(tab, app, "game", 50) == (50, 50)
    results = await tab.eval("window.results")
    assert results["closed"] is None and results["errors"] == [] and results["rtcClosed"] == []
    assert not app.tasks


# -- renegotiation, with every kind of channel -----------------------------------------------


CHANNELS = (
    ChannelSpec("game"),  # unordered, unreliable
    ChannelSpec("chat", ordered=True, max_retransmits=None, protocol="chat-v1"),
    ChannelSpec("sync", ordered=True, max_retransmits=None, negotiated=True, id=9),
    ChannelSpec("late", max_packet_lifetime=100),
)


async def test_renegotiation(launch: Any, start_server: Any, open_page: Any) -> None:
    app = FlowApp(CHANNELS)
    server = await start_server(app.setup)
    tab = await open_page(await launch("mdns"), server)
    results = await start_flow(tab, labels=[spec.label for spec in CHANNELS])
    assert sorted(results["labels"]) == sorted(spec.label for spec in CHANNELS)
    options = await tab.eval(
        "[...window.rtc.channels.values()].map((ch) => ({label: ch.label, ordered: ch.dc.ordered,"
        " maxRetransmits: ch.dc.maxRetransmits, maxPacketLifeTime: ch.dc.maxPacketLifeTime,"
        " protocol: ch.dc.protocol, negotiated: ch.dc.negotiated, id: ch.dc.id}))"
    )
    by_label = {option["label"]: option for option in options}
    for spec in CHANNELS:
        seen = by_label[spec.label]
        assert seen["ordered"] == spec.ordered
        assert seen["maxRetransmits"] == spec.max_retransmits
        assert seen["maxPacketLifeTime"] == spec.max_packet_lifetime
        assert seen["protocol"] == spec.protocol
        assert seen["negotiated"] == spec.negotiated
        if spec.negotiated:
            assert seen["id"] == spec.id
    for spec in CHANNELS:
        await exchange(tab, app, spec.label, 50)

    # The server asks (RENEGOTIATE); the page starts over with READY.
    first_pc = app.sessions[0].pc
    await tab.eval("T.sendText('reneg')")
    await tab.wait_for(
        "window.results.opened >= 2 && window.conn.current === 'control'",
        what="the server-initiated renegotiation",
    )
    assert app.sessions[0].pc is not first_pc
    assert first_pc is not None and first_pc.connectionState == "closed"
    for spec in CHANNELS:
        await exchange(tab, app, spec.label, 50)

    # The page asks (its old peer connection is closed first).
    await tab.eval("window.rtc.renegotiate()")
    await tab.wait_for(
        "window.results.opened >= 3 && window.conn.current === 'control'",
        what="the client-initiated renegotiation",
    )
    await exchange(tab, app, "game")

    # Both at once: the page's READY crosses the server's RENEGOTIATE, which the page
    # drops; asking twice sends one READY.
    await tab.eval("T.sendText('reneg'); window.rtc.renegotiate(); window.rtc.renegotiate()")
    await tab.wait_for(
        "window.results.opened >= 4 && window.conn.current === 'control'",
        what="the crossing renegotiation",
    )
    await exchange(tab, app, "game", 50)

    history = [entry["stage"] for entry in await tab.eval("window.conn.history")]
    assert history == CLIENT_HISTORY + ["rtc_offer", "rtc_open", "control"] * 3
    assert [e.stage for e in app.conns[0].stages.history] == SERVER_HISTORY + [
        "rtc_ready",
        "rtc_answer",
        "rtc_open",
        "control",
    ] * 3
    results = await tab.eval("window.results")
    assert results["errors"] == [] and results["closed"] is None
    assert results["rtcClosed"] == [], "deliberate renegotiation reported a lost channel"


async def test_page_hears_a_dead_peer_connection(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """The server's peer connection dies (the WebSocket lives on; no BYE, as when it
    fails): the page's rtc.onClose fires, and the page can renegotiate from there."""
    app = FlowApp()
    server = await start_server(app.setup)
    tab = await open_page(await launch("mdns"), server)
    await start_flow(tab)
    pc = app.sessions[0].pc
    assert pc is not None
    await close_peer(pc)
    await tab.wait_for("window.results.rtcClosed.length >= 1", what="rtc.onClose")
    await tab.eval("window.rtc.renegotiate()")
    await tab.wait_for(
        "window.results.opened >= 2 && window.conn.current === 'control'",
        what="renegotiation after the loss",
    )
    await exchange(tab, app, "game", 50)


# -- WebSocket rules seen from the page -------------------------------------------------------


async def test_text_frame_is_closed_with_1003(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    app = FlowApp()
    server = await start_server(app.setup)
    tab = await open_page(await launch("mdns"), server)
    await start_flow(tab)
    with pytest.raises(Exception, match="aiosocker is binary only"):
        await tab.eval("window.conn.send('text')")  # aiosocker.js refuses strings itself
    await tab.eval("window.conn.socket.send('text')")  # so go around it
    await tab.wait_for("window.results.closed !== null", what="the close")
    closed = await tab.eval("window.results.closed")
    assert closed["code"] == 1003, closed
    assert "text frames" in closed["reason"]
    await eventually(lambda: app.sessions[0].pc is None, "the server to drop the peer connection")
    assert await tab.eval("window.rtc.pc") is None  # closed with the WebSocket


async def test_handler_error_closes_4011_and_bad_url_rejects(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    app = FlowApp()
    server = await start_server(app.setup)
    tab = await open_page(await launch("loopback"), server)
    # A failed handshake (404: not the WebSocket's path) rejects open().
    error = await tab.eval(
        "T.aiosocker.connect('/nope').then(() => 'opened', (err) => `${err.name}: ${err.message}`)"
    )
    assert re.fullmatch(r"SockerError: could not connect to ws://127\.0\.0\.1:\d+/nope .*", error)
    await start_flow(tab)
    # Browsers may not send 1011: a handler that throws closes with 4011.
    await tab.eval("T.sendText('echo:boom')")
    await tab.wait_for("window.results.closed !== null", what="the close")
    results = await tab.eval("window.results")
    assert results["closed"]["code"] == 4011
    assert results["closed"]["reason"] == "stage 'control' raised TypeError"
    assert results["errors"] == ["TypeError: the app's handler failed"]
    await eventually(lambda: app.conns[0].closed, "the server to see the close")
    assert app.conns[0].close_code == 4011
    with pytest.raises(Exception, match="ConnectionClosedError"):
        await tab.eval("window.conn.send(new Uint8Array(1))")


async def test_unreliable_channel_drops_when_backed_up(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """Past maxBuffered bytes in the WebRTC stack, an unreliable channel drops (a game
    wants fresh updates, not a queue); a reliable one never does."""
    app = FlowApp(CHANNELS[:2])
    server = await start_server(app.setup)
    tab = await open_page(await launch("loopback"), server)
    await start_flow(tab, labels=["game", "chat"], maxBuffered=16 * 1024)
    # 10 tasks of 100 KB each: from the second on, the stack holds more than 16 KB.
    game = await tab.eval("T.flood('game', {tasks: 10, perTask: 100, size: 1000})")
    assert game["accepted"] == game["sent"] and game["accepted"] + game["dropped"] == 1000
    assert game["dropped"] > 0, game
    chat = await tab.eval("T.flood('chat', {tasks: 4, perTask: 50, size: 1000})")
    assert chat == {**chat, "accepted": 200, "sent": 200, "dropped": 0}, chat
    await eventually(lambda: len(app.got["chat"]) == 200, "every reliable message", 10)
    assert len(app.got["game"]) <= game["accepted"]


async def test_async_handlers_run_one_at_a_time(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    app = FlowApp()
    server = await start_server(app.setup)
    tab = await open_page(await launch("loopback"), server)
    await start_flow(tab)
    await tab.eval("T.sendText('slow')")
    await tab.wait_for("window.results.order.length >= 6", what="six control messages")
    expected = ["slow:30", "a", "slow:10", "b", "slow:1", "c"]
    assert await tab.eval("window.results.order") == expected


async def test_page_stage_timeout_closes_4408(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """A server that never offers: the page's rtc_offer stage times out."""
    conns: list[aiosocker.Connection] = []

    async def setup(conn: aiosocker.Connection) -> None:
        conns.append(conn)

        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        @conn.stage()
        def ignore(message: bytes) -> bool:
            return False

    server = await start_server(setup)
    tab = await open_page(await launch("loopback"), server)
    await tab.eval("T.startFlow({timeout: 300})")
    await tab.wait_for("window.results.closed !== null", what="the stage timeout")
    results = await tab.eval("window.results")
    assert results["closed"]["code"] == 4408
    assert "rtc_offer" in results["closed"]["reason"]
    assert results["errors"] == ["StageTimeoutError: stage 'rtc_offer' timed out after 0.3 s"]
    await eventually(lambda: conns[0].closed, "the server to see the close")
    assert conns[0].close_code == 4408


# -- deferred messages ---------------------------------------------------------------------


async def test_app_messages_mid_handshake_reach_the_final_stage_in_order(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """App frames the server sends right after the scene reach the page in rtc_offer:
    the rtc stages defer them (no 4400), and the final stage gets them first once the
    channels are open, in order, before anything newer."""
    app = FlowApp(after_scene=[b"news-1", b"news-2"])
    server = await start_server(app.setup)
    tab = await open_page(await launch("loopback"), server)
    await start_flow(tab)
    await tab.eval("T.sendText('echo:late')")
    await tab.wait_for("window.results.control.length >= 3", what="three control messages")
    results = await tab.eval("window.results")
    assert results["control"] == ["news-1", "news-2", "late"]
    # Deferred in rtc_offer, again in rtc_open (the next stage entered), then delivered.
    assert results["deferred"] == [
        ["rtc_offer", "news-1"],
        ["rtc_offer", "news-2"],
        ["rtc_open", "news-1"],
        ["rtc_open", "news-2"],
    ]
    # They came before the OFFER: the page was still negotiating.
    heads = [head for _, head in results["frames"]]
    offer = envelope.encode(Offer("v=0"))[:4].hex()
    assert heads.index(b"news".hex()) < heads.index(offer), heads
    assert [entry["stage"] for entry in await tab.eval("window.conn.history")] == CLIENT_HISTORY
    assert results["errors"] == [] and results["closed"] is None
    await exchange(tab, app, "game", 50)


async def test_malformed_signaling_mid_handshake_still_closes_4400(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    """Only frames without the magic are deferred: garbage that starts with ff 53 is
    bad signaling."""
    app = FlowApp(after_scene=[b"\xffS\x01\x0b"])  # type 0x0b does not exist
    server = await start_server(app.setup)
    tab = await open_page(await launch("loopback"), server)
    await tab.eval("T.startFlow()")
    await tab.wait_for("window.results.closed !== null", what="the close")
    results = await tab.eval("window.results")
    assert results["closed"]["code"] == 4400, results["closed"]
    assert results["closed"]["reason"].startswith("stage 'rtc_offer': unknown signaling message")
    assert results["deferred"] == []
    await eventually(lambda: app.conns[0].closed, "the server to see the close")
    assert app.conns[0].close_code == 4400


def replay_setup(conn: aiosocker.Connection) -> None:
    """A server that sends back each comma-separated part of what it gets."""

    @conn.stage()
    async def replay(message: bytes) -> bool:
        for part in message.split(b","):
            await conn.send(part)
        return False


async def test_defer_in_the_page(launch: Any, start_server: Any, open_page: Any) -> None:
    """conn.defer() alone, as tests/integration checks Connection.defer() in Python."""
    server = await start_server(replay_setup)
    tab = await open_page(await launch("loopback"), server)
    await tab.eval(
        """async () => {
        const text = (m) => T.decoder.decode(m);
        const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
        const r = window.results = {got: [], held: 0, jumped: [], full: null, errors: []};

        // Deferred messages go to the next stage before newer ones; deferred again,
        // they wait for the stage after that.
        const conn = window.conn = new T.aiosocker.Connection("/");
        conn.stage("waiting", (m) => {
            if (text(m) === "go") return true;
            conn.defer(m);  // not for this stage: the next one gets it
            return false;
        });
        conn.stage("second", async (m) => {
            await sleep(1);
            r.got.push(["second", text(m)]);
            if (text(m) !== "b") return false;
            conn.defer(m);  // deferred again: waits for the stage after this
            return true;
        });
        conn.stage("third", (m) => { r.got.push(["third", text(m)]); return false; });
        await conn.open();
        conn.send(T.encoder.encode("a,b,c,go,d"));

        // jump() from outside a handler is a stage change too.
        const other = window.other = new T.aiosocker.Connection("/");
        other.stage("hold", (m) => { other.defer(m); r.held++; return false; });
        other.stage("free", (m) => { r.jumped.push(text(m)); return false; });
        await other.open();
        other.send(T.encoder.encode("x,y"));
        while (r.held < 2) await sleep(5);
        other.jump("free");
        r.jumpedAtOnce = r.jumped.length;  // delivered by the pump, not inside jump()
        other.send(T.encoder.encode("z"));

        // More than maxDeferred waiting is a handler error: 4011.
        const full = new T.aiosocker.Connection("/", {maxDeferred: 2});
        full.stage("hoard", (m) => { full.defer(m); return false; });
        full.onError((err) => r.errors.push(`${err.name}: ${err.message}`));
        await full.open();
        full.send(T.encoder.encode("1,2,3"));
        r.full = await full.waitClosed();

        r.refused = T.each([
            () => new T.aiosocker.Connection("/", {maxDeferred: 0}),
            () => new T.aiosocker.Connection("/", {maxDeferred: 1.5}),
            () => conn.defer("text"),
        ], (f) => { f(); return "accepted"; });
    }"""
    )
    await tab.wait_for(
        "window.results.got.length >= 5 && window.results.jumped.length >= 3",
        what="every message handled",
    )
    await tab.eval("Promise.all([window.conn.close(), window.other.close()])")
    results = await tab.eval("window.results")
    assert results["got"] == [
        ["second", "a"],
        ["second", "b"],
        ["third", "b"],
        ["third", "c"],
        ["third", "d"],
    ]
    assert results["jumped"] == ["x", "y", "z"]
    assert results["jumpedAtOnce"] == 0
    assert results["full"] == {"code": 4011, "reason": "stage 'hoard' raised QueueFullError"}
    assert results["errors"] == [
        "QueueFullError: 2 messages deferred in stage 'hoard' (maxDeferred=2)"
    ]
    assert [r["error"] for r in results["refused"]] == ["RangeError", "RangeError", "TypeError"]


# -- the codecs: JavaScript against Python ----------------------------------------------------


def message_cases() -> list[Message]:
    """Every message type, with edge cases of every field."""
    sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"
    return [
        Ready(),
        Open(),
        Offer("v=0"),
        Offer(sdp, (ChannelSpec("game"),)),
        Offer(
            "v=0 ünïcødé 🎮",
            (
                ChannelSpec("state"),
                ChannelSpec("chat", ordered=True, max_retransmits=None, protocol="p"),
                ChannelSpec("t", max_packet_lifetime=500, negotiated=True, id=7),
                ChannelSpec("🎮 label", max_retransmits=65535, protocol="x" * 300),
                ChannelSpec("z", max_packet_lifetime=0, negotiated=True, id=65534),
                ChannelSpec("zero", negotiated=True, id=0, max_retransmits=3, ordered=True),
            ),
        ),
        Offer("x" * envelope.MAX_SDP_SIZE, (ChannelSpec("L" * 1000),)),
        Answer("v=0"),
        Answer(sdp * 100),
        Candidate("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host", "0", 0),
        Candidate("c"),
        Candidate("", "0"),
        Candidate("", None, 65535),
        Candidate("c", "é" * 100, 3),
        Renegotiate(),
        Renegotiate("channel died"),
        Error(4400, "bad"),
        Error(0),
        Error(65535, "x" * envelope.MAX_TEXT_SIZE),
        Bye(),
        Bye("done 🙂"),
        Resume("tok_-9"),
        Resume("ab", resumed=True, fresh_reason="unknown, used or expired token"),
        IceServers((IceServer("turn:h", "u", "p"),)),
        IceServers(
            (
                IceServer(
                    ["turn:t.example:3478?transport=udp", "turns:t.example:5349?transport=tcp"],
                    "1700000000:c1",
                    "é" * 100,
                ),
                IceServer("stun:" + "s" * (envelope.MAX_ICE_FIELD - 5)),
            )
            * 4
        ),
    ]


def as_js(message: Message) -> dict[str, Any]:
    """A Python message as aiosocker.js represents it."""
    match message:
        case Offer(sdp=sdp, channels=channels):
            return {
                "type": "OFFER",
                "sdp": sdp,
                "channels": [
                    {
                        "label": c.label,
                        "ordered": c.ordered,
                        "maxRetransmits": c.max_retransmits,
                        "maxPacketLifeTime": c.max_packet_lifetime,
                        "protocol": c.protocol,
                        "negotiated": c.negotiated,
                        "id": c.id,
                    }
                    for c in channels
                ],
            }
        case Answer(sdp=sdp):
            return {"type": "ANSWER", "sdp": sdp}
        case Candidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index):
            return {
                "type": "CANDIDATE",
                "candidate": candidate,
                "sdpMid": mid,
                "sdpMLineIndex": index,
            }
        case Renegotiate(reason=reason) | Bye(reason=reason):
            return {"type": message.TYPE.name, "reason": reason}
        case Error(code=code, reason=reason):
            return {"type": "ERROR", "code": code, "reason": reason}
        case Resume(token=token, resumed=resumed, fresh_reason=why):
            return {"type": "RESUME", "token": token, "resumed": resumed, "freshReason": why}
        case IceServers(servers=servers):
            return {
                "type": "ICE_SERVERS",
                "servers": [
                    {"urls": list(s.url_list), "username": s.username, "credential": s.credential}
                    for s in servers
                ],
            }
        case _:
            return {"type": message.TYPE.name}


def mutations(frames: list[bytes], rng: random.Random, count: int) -> list[bytes]:
    """Frames near valid ones: truncated, extended, with bytes changed or inserted."""
    out: list[bytes] = [b"", b"\xff", b"\xffS", b"\xffS\x01", b"\xffS\x02\x01", b"\xffS\x01\x09"]
    small = [f for f in frames if len(f) < 2000]
    for _ in range(count):
        frame = bytearray(rng.choice(small))
        kind = rng.randrange(4)
        if kind == 0 and len(frame) > 1:
            del frame[rng.randrange(1, len(frame)) :]
        elif kind == 1:
            frame += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        elif kind == 2:
            for _ in range(rng.randrange(1, 3)):
                frame[rng.randrange(2, len(frame))] = rng.randrange(256)
        else:
            pos = rng.randrange(4, len(frame) + 1)
            frame[pos:pos] = bytes([rng.choice([0, 1, 0x80, 0xC3, 0xFF])])
        out.append(bytes(frame))
    return out


def python_decode(frame: bytes) -> dict[str, Any] | None:
    try:
        return as_js(envelope.decode(frame))
    except aiosocker.SignalingError:
        return None


async def test_envelope_codec_matches_python(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    server = await start_server(lambda conn: None)
    tab = await open_page(await launch("loopback"), server)
    cases = message_cases()
    frames = [envelope.encode(m) for m in cases]
    assert {m.TYPE for m in cases} == set(envelope.MessageType)

    # Python encodes, JavaScript decodes.
    decoded = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.envelope.decode(T.unhex(f)))",
        [f.hex() for f in frames],
    )
    for message, result in zip(cases, decoded, strict=True):
        assert result == {"ok": as_js(message)}, message

    # JavaScript encodes, byte for byte as Python, and Python decodes it back.
    encoded = await tab.eval(
        "(messages) => T.each(messages, (m) => T.hex(T.aiosocker.envelope.encode(m)))",
        [as_js(m) for m in cases],
    )
    for message, frame, result in zip(cases, frames, encoded, strict=True):
        assert result == {"ok": frame.hex()}, message
        assert envelope.decode(bytes.fromhex(result["ok"])) == message
    # Defaults fill in as ChannelSpec's do.
    short = await tab.eval(
        "T.hex(T.aiosocker.envelope.encode({type: 'OFFER', sdp: 'v=0', channels: [{label: 'state'},"
        " {label: 't', maxPacketLifeTime: 500, negotiated: true, id: 7}]}))"
    )
    expected = Offer(
        "v=0",
        (ChannelSpec("state"), ChannelSpec("t", max_packet_lifetime=500, negotiated=True, id=7)),
    )
    assert short == envelope.encode(expected).hex()

    # Near-valid frames: JavaScript accepts exactly what Python accepts, with the same
    # result, and rejects the rest with a SignalingError.
    fuzz = mutations(frames, random.Random(4), 1500)
    results = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.envelope.decode(T.unhex(f)))",
        [f.hex() for f in fuzz],
    )
    accepted = 0
    for frame, result in zip(fuzz, results, strict=True):
        expected_result = python_decode(frame)
        if expected_result is None:
            assert result.get("error") == "SignalingError", (frame.hex(), result)
        else:
            accepted += 1
            assert result == {"ok": expected_result}, frame.hex()
    assert 50 < accepted < len(fuzz) - 500, "the fuzz cases should mix valid and invalid"

    # What the encoder refuses (a local bug), it refuses as Python does.
    refused = await tab.eval(
        """() => T.each([
            {type: "ANSWER", sdp: ""},
            {type: "OFFER", sdp: "v=0", channels: [{label: ""}]},
            {type: "OFFER", sdp: "v=0", channels: [{label: "a"}, {label: "a"}]},
            {type: "OFFER", sdp: "v=0",
             channels: [{label: "a", maxRetransmits: 1, maxPacketLifeTime: 1}]},
            {type: "OFFER", sdp: "v=0", channels: [{label: "a", negotiated: true}]},
            {type: "OFFER", sdp: "v=0", channels: [{label: "a", negotiated: true, id: 65535}]},
            {type: "OFFER", sdp: "v=0", channels: [{label: "a", id: 3}]},
            {type: "OFFER", sdp: "v=0", channels: [{label: "a", ordered: 1}]},
            {type: "ERROR", code: 65536},
            {type: "BYE", reason: "\\ud800"},
            {type: "BYE", reason: "x".repeat(4097)},
            {type: "CANDIDATE", candidate: "c", sdpMLineIndex: -1},
            {type: "ICE_SERVERS", servers: []},
            {type: "ICE_SERVERS", servers: [{urls: "http://h"}]},
            {type: "ICE_SERVERS", servers: [{urls: []}]},
            {type: "ICE_SERVERS", servers: [{urls: "turn:h", username: 7}]},
            {type: "ICE_SERVERS", servers: Array(9).fill({urls: "stun:h"})},
            {type: "HELLO"},
        ], (m) => T.aiosocker.envelope.encode(m))"""
    )
    assert all("error" in r and r["error"] in ("TypeError", "RangeError") for r in refused), refused


async def test_batch_codec_matches_python(launch: Any, start_server: Any, open_page: Any) -> None:
    server = await start_server(lambda conn: None)
    tab = await open_page(await launch("loopback"), server)
    rng = random.Random(7)
    cases: list[tuple[list[bytes], int]] = [
        ([b"hi"], 16384),
        ([b""], 16384),
        ([b"a", b"bc", b""], 16384),
        ([b"x" * 300, b"y"], 16384),
        ([b"x" * 20000], 16384),
        ([b"x" * 20000, b"a", b"b"], 16384),
        ([bytes([i]) * i for i in range(200)], 100),
        ([b"ab"] * 10, 1),
        ([b"ab"] * 10, 7),
        ([b"q" * 16383], 16384),
        ([b"q" * 16382, b""], 16384),
        ([], 16384),
    ]
    for _ in range(40):
        messages = [
            rng.randbytes(rng.choice([0, 1, 5, 127, 128, 300, 3000]))
            for _ in range(rng.randrange(1, 30))
        ]
        cases.append((messages, rng.choice([16, 200, 1000, 16384])))

    packed = await tab.eval(
        "(cases) => cases.map(([messages, max]) =>"
        " T.aiosocker.batch.pack(messages.map(T.unhex), max).map(T.hex))",
        [[[m.hex() for m in messages], max_size] for messages, max_size in cases],
    )
    for (messages, max_size), frames in zip(cases, packed, strict=True):
        expected = batch.pack(messages, max_size)
        assert frames == [f.hex() for f in expected], (messages[:3], max_size)
        # JavaScript unpacks Python's frames.
    all_frames = [f for messages, max_size in cases for f in batch.pack(messages, max_size)]
    unpacked = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.batch.unpack(T.unhex(f)).map(T.hex))",
        [f.hex() for f in all_frames],
    )
    for frame, result in zip(all_frames, unpacked, strict=True):
        assert result == {"ok": [m.hex() for m in batch.unpack(frame)]}

    # Malformed and odd frames: same verdicts, same messages.
    odd = [
        b"",
        b"\xb2",
        b"\xb1",
        b"\xb0",
        b"\xb1\x00",
        b"\xb1\x80",
        b"\xb1\x80\x00",
        b"\xb1\x81\x00",
        b"\xb1\x80\x80\x80\x80\x01",
        b"\xb1\xff\xff\xff\x7f",
        b"\xb1\x05ab",
        b"\xb1\x01a\x02",
        b"\xb1\x01a",
        b"\xb1\xac\x02" + b"x" * 300,
    ]
    for _ in range(600):
        frame = bytearray(rng.choice(all_frames[:200]) or b"\xb0")[:64]
        if rng.random() < 0.5 and len(frame) > 1:
            del frame[rng.randrange(1, len(frame)) :]
        else:
            frame[rng.randrange(len(frame))] = rng.choice([0, 1, 0x7F, 0x80, 0xB0, 0xB1, 0xFF])
        odd.append(bytes(frame))
    verdicts = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.batch.unpack(T.unhex(f)).map(T.hex))",
        [f.hex() for f in odd],
    )
    for frame, result in zip(odd, verdicts, strict=True):
        try:
            expected_messages = [m.hex() for m in batch.unpack(frame)]
        except batch.BatchError:
            assert result.get("error") == "BatchError", (frame.hex(), result)
        else:
            assert result == {"ok": expected_messages}, frame.hex()
    refused = await tab.eval(
        "() => T.each([0, 1 << 29, 1.5, '10'], (max) => T.aiosocker.batch.pack([], max))"
    )
    assert [r.get("error") for r in refused] == [
        "RangeError",
        "RangeError",
        "TypeError",
        "TypeError",
    ]


async def test_page_is_served_with_socker_js() -> None:
    """The routes the tests rely on: /aiosocker.js (the entry, which re-exports its
    modules from /aiosocker/) and /aiosocker.d.ts from the package."""
    routes = aiosocker.routes.default_routes()
    assert routes["/aiosocker.js"].content_type.startswith("text/javascript")
    assert (
        b'export { Connection, connect } from "./aiosocker/connection.js"'
        in (routes["/aiosocker.js"].render()[1])
    )
    assert b"export class Connection" in routes["/aiosocker/connection.js"].render()[1]
    assert re.search(rb"export declare class Connection", routes["/aiosocker.d.ts"].render()[1])
