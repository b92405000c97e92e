"""Session resume in Chromium: aiosocker.js against a real server with ``resume=``.

The page (``pages/resume.js``, loaded into the flow page) plays a small game on
``aiosocker.reconnecting()``: ``lobby`` -> ``game``, the server ``hello`` -> ``playing``
with a counter in ``conn.state`` and the room ``match``. When the server cuts the TCP
connection the page comes back by itself as the same session; after a clean 1000 close
it starts a fresh one. The RESUME frame's codec is checked against Python's here too.
"""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path
from typing import Any

import pytest

import aiosocker
from aiosocker import Route
from aiosocker.resume import new_token
from aiosocker.rtc import envelope
from aiosocker.rtc.envelope import Resume

from .conftest import HOST, Tab, eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

RESUME_JS = Route(
    "text/javascript; charset=utf-8", (Path(__file__).parent / "pages" / "resume.js").read_bytes()
)


class Game:
    """The server: ``hello`` (the player's name; joins ``match``, says welcome) ->
    ``playing`` (counts moves in ``conn.state``)."""

    def __init__(self) -> None:
        self.opened: list[aiosocker.Connection] = []

    def setup(self, conn: aiosocker.Connection) -> None:
        @conn.stage(timeout=5)
        def hello(message: bytes) -> bool:
            conn.state["name"] = message.decode()
            conn.state["moves"] = 0
            conn.join("match")
            conn.write(b"welcome")
            return True

        @conn.stage()
        def playing(message: bytes) -> bool:
            conn.state["moves"] += 1
            conn.write(b"moved %d" % conn.state["moves"])
            return False

    async def start(self, start_server: Any) -> aiosocker.Server:
        server: aiosocker.Server = await start_server(
            self.setup, resume=5, on_open=self.opened.append, routes={"/resume.js": RESUME_JS}
        )
        return server


async def start_page(tab: Tab, name: str, url: str = "/", **options: Any) -> None:
    await tab.eval(
        """async ([name, url, options]) => {
            window.R = await import("/resume.js");
            return window.R.start(name, url, options);
        }""",
        [name, url, options],
    )


async def play(tab: Tab, game: Game, name: str) -> aiosocker.Connection:
    """Start the page's session and make one move; returns the server's connection."""
    await start_page(tab, name)
    await tab.wait_for("window.resume.got.includes('welcome')", what="the welcome")
    await tab.eval("R.send('move')")
    await tab.wait_for("window.resume.got.includes('moved 1')", what="the first move")
    (conn,) = game.opened
    assert conn.state == {"name": name, "moves": 1} and conn.current == "playing"
    assert conn.rooms == frozenset({"match"})
    return conn


async def test_a_dropped_page_resumes_by_itself(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    game = Game()
    server = await game.start(start_server)
    tab = await open_page(await launch("mdns"), server)
    first = await play(tab, game, "ann")
    assert await tab.eval("window.session.conn.resumeToken") == first.resume_token
    assert await tab.eval("window.session.conn.resumed") is False

    # The network dies under the page: no close frame. The page waits in setup (held)
    # so that a broadcast reaches the parked session, not a live one.
    await tab.eval("R.hold()")
    transport: Any = first._transport
    transport.ws.transport.abort()
    await asyncio.wait_for(first.wait_closed(), 5)
    assert first.close_code == 1006 and first.may_resume
    await eventually(lambda: not server.connections, "the server to park the session")
    assert await server.members("match") == 1  # parked: still a member
    assert await server.broadcast(b"while away", room="match") == 1
    await tab.wait_for("window.resume.closes.length === 1", what="the page to see the drop")
    assert (await tab.eval("window.resume.closes")) == [
        {"code": 1006, "reason": "", "mayResume": True, "token": True}
    ]

    await tab.eval("R.release()")
    await tab.wait_for("window.resume.got.includes('while away')", what="the missed broadcast")
    page = await tab.eval("window.resume")
    assert page["resumed"] == [False, True]
    assert page["connects"] == [
        {"connections": 1, "failures": 0},
        {"connections": 2, "failures": 0},
    ]
    assert page["urls"][0] == server.url
    assert page["urls"][1] == f"{server.url}?resume={first.resume_token}"
    assert await tab.eval("window.session.conn.resumed") is True
    assert await tab.eval("window.session.conn.current") == "game"
    assert await tab.eval("window.session.conn.history.map((e) => e.via + ':' + e.stage)") == [
        "start:lobby",
        "jump:game",
    ]

    # The server: the same id, state, room and stage, and a new token.
    first_id, first_token = first.id, first.resume_token
    second = game.opened[1]
    assert second.resumed and second.id == first_id
    assert second.state == {"name": "ann", "moves": 1} and second.current == "playing"
    assert second.rooms == frozenset({"match"}) and await server.members("match") == 1
    assert second.resume_token not in (None, first_token)
    assert await tab.eval("window.session.conn.resumeToken") == second.resume_token
    await tab.eval("R.send('move')")
    await tab.wait_for("window.resume.got.includes('moved 2')", what="the state kept")
    assert second.state["moves"] == 2
    assert (await tab.eval("window.resume.got")) == ["welcome", "moved 1", "while away", "moved 2"]

    # stop() says goodbye with 1000: final, nothing is parked.
    await tab.eval("window.session.stop()")
    await asyncio.wait_for(second.wait_closed(), 5)
    assert second.close_code == 1000 and not second.may_resume
    page = await tab.eval("window.resume")
    assert page["stops"] == [None]
    assert page["closes"][-1] == {"code": 1000, "reason": "", "mayResume": False, "token": True}
    await eventually(lambda: not server.connections, "the server to drop the session")
    assert await server.members("match") == 0
    assert len(game.opened) == 2
    assert not any("error" in line for line in tab.logs), tab.logs


async def test_a_clean_close_starts_a_fresh_session(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    game = Game()
    server = await game.start(start_server)
    tab = await open_page(await launch("mdns"), server)
    first = await play(tab, game, "bob")

    await first.close(1000, "see you")
    await tab.wait_for("window.resume.resumed.length === 2", what="a second connection")
    page = await tab.eval("window.resume")
    closed = {"code": 1000, "reason": "see you", "mayResume": False, "token": True}
    assert page["closes"] == [closed]
    assert page["resumed"] == [False, False]
    assert page["urls"] == [server.url, server.url]  # no ?resume=
    await tab.wait_for("window.resume.got.filter((t) => t === 'welcome').length === 2")
    second = game.opened[1]
    assert not second.resumed and second.id != first.id
    assert second.state == {"name": "bob", "moves": 0} and second.current == "playing"
    assert await tab.eval("window.session.conn.resumed") is False
    assert await tab.eval("window.session.conn.current") == "game"

    await tab.eval("window.session.stop()")
    await asyncio.wait_for(second.wait_closed(), 5)
    assert (await tab.eval("window.resume.stops")) == [None]

    # connect() with a token the server does not keep (the session ended with 1000):
    # a fresh session, and the page's console says why.
    fresh = await tab.eval(
        """async (token) => {
            const conn = await T.aiosocker.connect("/", {resumeToken: token});
            const seen = await new Promise((resolve) => conn.onResume(resolve));
            await conn.close();
            return [conn.url, seen, conn.resumed, conn.resumeToken !== null, conn.mayResume];
        }""",
        first.resume_token,
    )
    assert fresh == [f"{server.url}?resume={first.resume_token}", False, False, True, False]
    why = "unknown, used or expired token"
    assert f"info: aiosocker: the server started a fresh session: {why}" in tab.logs
    assert not game.opened[2].resumed


async def test_it_gives_up_after_max_failures(
    launch: Any, start_server: Any, open_page: Any
) -> None:
    game = Game()
    server = await game.start(start_server)
    tab = await open_page(await launch("mdns"), server)
    with socket.socket() as free:  # a loopback port nobody listens on
        free.bind((HOST, 0))
        port = free.getsockname()[1]
    await start_page(tab, "cy", f"ws://{HOST}:{port}/", maxFailures=3)
    await tab.wait_for("window.resume.stops.length === 1", what="the page to give up")
    page = await tab.eval("window.resume")
    assert page["connects"] == [] and len(page["urls"]) == 3
    (why,) = page["stops"]
    assert why.startswith("SockerError: gave up after 3 failed attempts in a row: could not")
    assert await tab.eval("[window.session.stopped, window.session.failures]") == [True, 3]
    assert not game.opened

    # Options are checked up front.
    refused = await tab.eval(
        """() => T.each([
            [{backoff: {initial: 0}}],
            [{backoff: {factor: 0.5}}],
            [{backoff: {jitter: 2}}],
            [{maxFailures: 0}],
            [{resumeToken: "a b"}],
        ], ([options]) => T.aiosocker.reconnecting("/", null, options))"""
    )
    assert [r.get("error") for r in refused] == ["RangeError"] * 5


# -- the RESUME frame: JavaScript against Python -----------------------------------------

# As in tests/unit/test_envelope.py and docs/protocol.md.
GOLDEN = [
    (Resume("ab", resumed=True), "ff 53 01 09 01 00 02 61 62"),
    (Resume("ab", fresh_reason="x"), "ff 53 01 09 00 00 02 61 62 78"),
]

MODULE_PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,">
<script type="module">
import { encode, decode } from "/aiosocker/envelope.js";

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
window.golden = [
  hex(encode({ type: "RESUME", token: "ab", resumed: true })),
  hex(encode({ type: "RESUME", token: "ab", freshReason: "x" })),
];
window.decoded = [
  decode(Uint8Array.of(0xff, 0x53, 0x01, 0x09, 0x01, 0x00, 0x02, 0x61, 0x62)),
  decode(Uint8Array.of(0xff, 0x53, 0x01, 0x09, 0x00, 0x00, 0x02, 0x61, 0x62, 0x78)),
];
window.pageReady = true;
</script>
"""


async def test_resume_golden_frames_in_the_envelope_module(launch: Any, start_server: Any) -> None:
    server = await start_server(lambda conn: None, routes={"/golden": Route.html(MODULE_PAGE)})
    context = await (await launch("mdns")).new_context()
    try:
        page = await context.new_page()
        await page.goto(server.http_url + "golden", timeout=5000)
        await page.wait_for_function("window.pageReady === true", timeout=5000)
        golden = [bytes.fromhex(frame).hex() for _, frame in GOLDEN]
        assert [envelope.encode(message).hex() for message, _ in GOLDEN] == golden
        assert await page.evaluate("window.golden") == golden
        assert await page.evaluate("window.decoded") == [
            {"type": "RESUME", "token": "ab", "resumed": True, "freshReason": ""},
            {"type": "RESUME", "token": "ab", "resumed": False, "freshReason": "x"},
        ]
    finally:
        await context.close()


def as_js(message: Resume) -> dict[str, Any]:
    return {
        "type": "RESUME",
        "token": message.token,
        "resumed": message.resumed,
        "freshReason": message.fresh_reason,
    }


def python_decode(frame: bytes) -> dict[str, Any] | None:
    try:
        message = envelope.decode(frame)
    except aiosocker.SignalingError:
        return None
    assert isinstance(message, Resume)
    return as_js(message)


async def test_resume_codec_matches_python(launch: Any, start_server: Any, open_page: Any) -> None:
    server = await start_server(lambda conn: None)
    tab = await open_page(await launch("mdns"), server)
    cases = [
        Resume("a"),
        Resume("tok_-9", resumed=True),
        Resume("A" * 256, fresh_reason="unknown, used or expired token"),
        Resume("z", fresh_reason="ünïcødé 🙂" * 10),
        Resume("x", fresh_reason="r" * envelope.MAX_TEXT_SIZE),
        Resume(new_token(), resumed=True),
    ]
    frames = [envelope.encode(m) for m in cases]
    decoded = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.envelope.decode(T.unhex(f)))",
        [f.hex() for f in frames],
    )
    assert decoded == [{"ok": as_js(m)} for m in cases]
    encoded = await tab.eval(
        "(messages) => T.each(messages, (m) => T.hex(T.aiosocker.envelope.encode(m)))",
        [as_js(m) for m in cases],
    )
    assert encoded == [{"ok": f.hex()} for f in frames]

    # Near-valid frames: the same verdicts, the same results.
    rng = random.Random(9)
    fuzz = [b"\xffS\x01\x09", b"\xffS\x01\x09\x01", b"\xffS\x01\x09\x00\x00", b"\xffS\x01\x0a"]
    for _ in range(600):
        frame = bytearray(rng.choice(frames[:4]))
        kind = rng.randrange(3)
        if kind == 0:
            del frame[rng.randrange(4, len(frame)) :]
        elif kind == 1:
            frame[rng.randrange(4, min(len(frame), 12))] = rng.choice(
                [0, 1, 2, 0x2E, 0x2D, 0x5F, 0x80, 0xC3, 0xFF]
            )
        else:
            pos = rng.randrange(4, len(frame) + 1)
            frame[pos:pos] = bytes([rng.choice([0, 1, 0x41, 0x80, 0xFF])])
        fuzz.append(bytes(frame))
    results = await tab.eval(
        "(frames) => T.each(frames, (f) => T.aiosocker.envelope.decode(T.unhex(f)))",
        [f.hex() for f in fuzz],
    )
    accepted = 0
    for frame, result in zip(fuzz, results, strict=True):
        expected = python_decode(frame)
        if expected is None:
            assert result.get("error") == "SignalingError", (frame.hex(), result)
        else:
            accepted += 1
            assert result == {"ok": expected}, frame.hex()
    assert 50 < accepted < len(fuzz) - 50, "the fuzz cases should mix valid and invalid"
    unknown = await tab.eval("T.each([T.unhex('ff53010b')], (f) => T.aiosocker.envelope.decode(f))")
    assert unknown[0]["message"] == "unknown signaling message type 0x0b; version 1 has 0x01..0x0a"

    # What the encoder refuses, it refuses as Python's Resume does.
    refused = await tab.eval(
        """() => T.each([
            {type: "RESUME", token: ""},
            {type: "RESUME", token: "a b"},
            {type: "RESUME", token: "a.b"},
            {type: "RESUME", token: "é"},
            {type: "RESUME", token: "x".repeat(257)},
            {type: "RESUME", token: "a", resumed: 1},
            {type: "RESUME", token: "a", freshReason: "x".repeat(4097)},
            {type: "RESUME"},
        ], (m) => T.aiosocker.envelope.encode(m))"""
    )
    errors = ["RangeError"] * 5 + ["TypeError", "RangeError", "TypeError"]
    assert [r.get("error") for r in refused] == errors
