"""docs/protocol.md, section 7 "Conformance", checked, and a foreign WebRTC stack's
session replayed byte for byte.

* Every frame of section 7 is read from the Markdown (its hex code spans, with
  ``<SDP>``, ``<candidate>`` and ``<token>`` filled in) and decoded with
  :func:`aiosocker.rtc.envelope.decode`: it is the message its row names, or the
  decoder's error its row gives. The error rows are then sent to a live server, which
  must close with the row's code and reason.
* ``recordings/chromium-session.json`` holds what Chromium sent during complete
  handshakes (``recordings/record.py`` made it, by hand). Its client frames are sent
  unchanged, WebSocket header and mask key included, from a hand-written client to a
  fresh server: READY gets an OFFER with the recorded channels, Chromium's ANSWER and
  CANDIDATEs are accepted, and with no DTLS peer behind them the server ends with the
  ``rtc_open`` timeout (4408), never 4400. The same frames with one byte of a header or
  length field flipped close with the documented 4400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import aiosocker
from aiosocker import SignalingError
from aiosocker.rtc import server_stages
from aiosocker.rtc.envelope import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    IceServer,
    IceServers,
    Message,
    MessageType,
    Offer,
    Open,
    Ready,
    Renegotiate,
    Resume,
    decode,
    encode,
)

from .conftest import StartServer, eventually
from .raw import BINARY, CLOSE, frame, upgraded

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
RECORDING = Path(__file__).parent / "recordings" / "chromium-session.json"

TIMEOUT = 1.0  # the replay servers' rtc stage timeout (4408 once it expires)

# -- section 7, as data -------------------------------------------------------------------

SAMPLES = {  # what the placeholders of section 7 stand for
    "SDP": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "candidate": "candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host",
    "token": "Zm9vYmFyYmF6cXV4LXRva2VuXzQzLWNoYXJhY3RlcnM",  # 43, as the server makes them
}
SDP, CANDIDATE_LINE, TOKEN = SAMPLES["SDP"], SAMPLES["candidate"], SAMPLES["token"]

THREE_CHANNELS = (
    ChannelSpec("game"),
    ChannelSpec("chat", ordered=True, max_retransmits=None),
    ChannelSpec("sync", ordered=True, max_retransmits=None, negotiated=True, id=42),
)

# The message each row's "message" cell names. Every entry is used by some row, and
# every row's message is here.
EXPECTED: dict[str, Message] = {
    "READY": Ready(),
    'OFFER, one channel "game" (the default)': Offer(SDP, (ChannelSpec("game"),)),
    'OFFER, channels "game" (the default), "chat" (ordered, reliable) and "sync"'
    " (ordered, reliable, negotiated, id 42)": Offer(SDP, THREE_CHANNELS),
    "ANSWER": Answer(SDP),
    'CANDIDATE, sdp_mid "0", sdp_mline_index 0': Candidate(CANDIDATE_LINE, "0", 0),
    "CANDIDATE, end of candidates (no sdp_mid, no sdp_mline_index)": Candidate(""),
    "OPEN": Open(),
    'RENEGOTIATE "server asked" (what the Python server sends)': Renegotiate("server asked"),
    'ERROR 4400 "bad"': Error(4400, "bad"),
    "BYE, no reason": Bye(),
    "RESUME, a fresh session (no token was given)": Resume(TOKEN),
    "RESUME, resumed": Resume(TOKEN, resumed=True),
    'ICE_SERVERS "turn:h", user "u", credential "p"': IceServers((IceServer("turn:h", "u", "p"),)),
}

# Who may send each type (section 1), in the transcripts' arrows.
SENDERS = {
    MessageType.READY: {"C→S"},
    MessageType.OFFER: {"S→C"},
    MessageType.ANSWER: {"C→S"},
    MessageType.CANDIDATE: {"C→S"},  # either way in the format; the server never trickles
    MessageType.OPEN: {"C→S", "S→C"},
    MessageType.RESUME: {"S→C"},
    MessageType.ICE_SERVERS: {"S→C"},
}

HEX = re.compile(r"^[0-9a-f]{2}( [0-9a-f]{2})*$")
PLACEHOLDER = re.compile(r"^<(\w+)>$")
CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Row:
    """One table row of section 7 that carries a frame."""

    table: str  # the heading above the table
    line: int
    cells: dict[str, str]  # by column header
    frame: bytes

    @property
    def id(self) -> str:
        return f"line {self.line}"


def section(text: str) -> tuple[int, str]:
    """Section 7 of protocol.md and the line number it starts on."""
    start = text.index("\n## 7. Conformance\n") + 1
    end = text.find("\n## ", start + 1)
    return text.count("\n", 0, start) + 1, text[start : None if end < 0 else end]


def cells_of(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def frame_of(cell: str) -> bytes | None:
    """The frame a cell spells out, if it holds nothing but code spans of hex bytes and
    placeholders."""
    spans = CODE.findall(cell)
    if not spans or not spans[0].startswith("ff 53") or CODE.sub("", cell).strip():
        return None  # not a frame, or a frame named in prose
    data = b""
    for span in spans:
        if HEX.match(span):
            data += bytes.fromhex(span)
        elif match := PLACEHOLDER.match(span):
            data += SAMPLES[match[1]].encode()
        else:
            raise AssertionError(f"neither hex nor a placeholder: {span!r} in {cell!r}")
    return data


def rows(text: str) -> list[Row]:
    first, body = section(text)
    found: list[Row] = []
    heading, header = "", None
    for number, line in enumerate(body.splitlines(), first):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = cells_of(line)
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-:| "):
            continue  # the alignment row
        assert len(cells) == len(header), f"line {number}: {len(cells)} cells, not {len(header)}"
        by_name = dict(zip(header, cells, strict=True))
        data = [frame_of(cell) for cell in cells]
        frames = [f for f in data if f is not None]
        assert len(frames) <= 1, f"line {number}: more than one frame"
        if frames:
            found.append(Row(heading, number, by_name, frames[0]))
    return found


ROWS = rows(PROTOCOL.read_text())
MESSAGE_ROWS = [row for row in ROWS if "message" in row.cells]
ERROR_ROWS = [row for row in ROWS if "decoder error" in row.cells]
WRONG_TIME_ROWS = [row for row in ROWS if "in stage" in row.cells]


def test_section_7_frames_are_all_checked() -> None:
    assert len(ROWS) >= 40, f"only {len(ROWS)} frames found in section 7"
    assert {row.id for row in MESSAGE_ROWS} | {row.id for row in ERROR_ROWS} == {
        row.id for row in ROWS
    }, "every frame row names a message or a decoder error"
    named = {row.cells["message"] for row in MESSAGE_ROWS}
    assert named == set(EXPECTED), "section 7's messages and this test's differ"
    # Every type has a row in "Every frame type".
    types = {row.frame[3] for row in ROWS if row.table == "Every frame type"}
    assert types == set(MessageType)


@pytest.mark.parametrize("row", MESSAGE_ROWS, ids=lambda row: row.id)
def test_section_7_frame_decodes_to_its_message(row: Row) -> None:
    message = EXPECTED[row.cells["message"]]
    assert decode(row.frame) == message
    assert encode(message) == row.frame  # one encoding per message
    if "type" in row.cells:
        assert row.cells["type"] == f"`{row.frame[3]:02x}`"
    if "direction" in row.cells:
        assert row.cells["direction"] in SENDERS[MessageType(row.frame[3])]


@pytest.mark.parametrize("row", ERROR_ROWS, ids=lambda row: row.id)
def test_section_7_malformed_frame_gives_its_error(row: Row) -> None:
    (expected,) = CODE.findall(row.cells["decoder error"])
    with pytest.raises(SignalingError) as caught:
        decode(row.frame)
    assert str(caught.value) == expected


# -- a hand-written client ----------------------------------------------------------------


class RawPeer:
    """A WebSocket client on raw bytes (tests/integration/raw.py's upgrade)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        return cls(*await upgraded(port))

    def send(self, payload: bytes) -> None:
        """A binary message, framed and masked here."""
        self.writer.write(frame(BINARY, payload))

    def send_wire(self, wire: bytes) -> None:
        """A frame exactly as recorded: header, mask key and masked payload."""
        self.writer.write(wire)

    async def receive(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        head = await self.reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        assert not head[1] & 0x80, "a server frame is never masked"
        return head[0] & 0x0F, await self.reader.readexactly(size)

    async def message(self) -> Message:
        opcode, payload = await asyncio.wait_for(self.receive(), 5)
        assert opcode == BINARY, f"expected a binary frame, got opcode {opcode}: {payload!r}"
        return decode(payload)

    async def closed(self) -> tuple[int, str]:
        """Wait for the server's close frame (skipping anything before it); answer it."""
        while True:
            opcode, payload = await asyncio.wait_for(self.receive(), 10)
            if opcode == CLOSE:
                break
        self.writer.write(frame(CLOSE, payload))
        self.writer.close()
        (code,) = struct.unpack("!H", payload[:2])
        return code, payload[2:].decode()


def reason_is(got: str, expected: str) -> bool:
    """Whether a close reason is ``expected``, as cut to 123 bytes (close-codes.md)."""
    if got == expected:
        return True
    return len(got.encode()) <= 123 and got.endswith("...") and expected.startswith(got[:-3])


# -- section 7's error rows, live ---------------------------------------------------------


async def hello_then_rtc(conn: aiosocker.Connection) -> None:
    """Section 7's server: an app stage ``hello``, the rtc stages, a final stage."""

    @conn.stage(timeout=5)
    def hello(message: bytes) -> bool:
        assert message == b"hello"
        return True

    server_stages(conn, timeout=5)

    @conn.stage()
    def control(message: bytes) -> bool:
        return False


async def into_stage(peer: RawPeer, stage: str, answer: bytes) -> None:
    """Take the hello_then_rtc server to ``stage`` (the server handles frames in order)."""
    steps = ["hello", "rtc_ready", "rtc_answer", "rtc_open"]
    for step in steps[1 : steps.index(stage) + 1]:
        if step == "rtc_ready":
            peer.send(b"hello")
        elif step == "rtc_answer":
            peer.send(encode(Ready()))
            assert isinstance(await peer.message(), Offer)
        else:
            peer.send(answer)


def chromium_answer() -> bytes:
    """An ANSWER the server takes: Chromium's, from the recording."""
    frames = SESSIONS[0]["frames"]
    return bytes.fromhex(next(f["hex"] for f in frames if f.get("type") == "ANSWER"))


async def test_section_7_error_rows_close_as_documented(start_server: StartServer) -> None:
    server = await start_server(hello_then_rtc)
    answer = chromium_answer()

    async def malformed(row: Row) -> tuple[int, str]:
        peer = await RawPeer.connect(server.port)
        await into_stage(peer, "rtc_ready", answer)
        peer.send(row.frame)
        return await peer.closed()

    async def wrong_time(row: Row) -> tuple[int, str]:
        peer = await RawPeer.connect(server.port)
        await into_stage(peer, row.cells["in stage"].strip("`"), answer)
        peer.send(row.frame)
        return await peer.closed()

    cases: dict[str, Awaitable[tuple[int, str]]] = {}
    expected: dict[str, tuple[int, str]] = {}
    for row in ERROR_ROWS:
        (error,) = CODE.findall(row.cells["decoder error"])
        cases[row.id] = malformed(row)
        expected[row.id] = (4400, f"stage 'rtc_ready': {error}")
    for row in WRONG_TIME_ROWS:
        (reason,) = CODE.findall(row.cells["reason"])
        cases[row.id] = wrong_time(row)
        expected[row.id] = (int(row.cells["close"]), reason)
    assert len(WRONG_TIME_ROWS) >= 5
    got = dict(zip(cases, await asyncio.gather(*cases.values()), strict=True))
    assert {k: (code, reason_is(reason, expected[k][1])) for k, (code, reason) in got.items()} == {
        k: (code, True) for k, (code, _) in expected.items()
    }, f"got {got}"


# -- the recorded Chromium sessions -------------------------------------------------------

RECORDED = json.loads(RECORDING.read_text())
SESSIONS: list[dict[str, Any]] = RECORDED["sessions"]


def test_the_recording_is_what_it_says() -> None:
    """The fixture is self-consistent: each client frame's wire bytes unmask to its
    message, every binary frame decodes to its type, and each session is a whole
    handshake (READY ... OPEN both ways, then a 1000 close)."""
    assert [s["name"] for s in SESSIONS] == ["aiosocker.js", "trickle-mdns", "trickle-ip"]
    for session in SESSIONS:
        types = []
        for entry in session["frames"]:
            payload = bytes.fromhex(entry["hex"])
            if entry["dir"] == "c2s":
                wire = bytes.fromhex(entry["wire"])
                assert wire[1] & 0x80, "a client frame is masked"
                head = 2 + {126: 2, 127: 8}.get(wire[1] & 0x7F, 0)
                key, masked = wire[head : head + 4], wire[head + 4 :]
                assert bytes(b ^ key[i % 4] for i, b in enumerate(masked)) == payload
            if "type" in entry:
                assert type(decode(payload)).__name__.upper() == entry["type"]
                types.append(entry["dir"] + " " + entry["type"])
        trickles = session["name"].startswith("trickle")
        assert types[:3] == ["c2s READY", "s2c OFFER", "c2s ANSWER"]
        assert types[-2:] == ["c2s OPEN", "s2c OPEN"]
        assert ("c2s CANDIDATE" in types) == trickles
        if trickles:  # candidates, then the end of candidates (an empty one), once
            lines = [
                message.candidate
                for e in session["frames"]
                if e.get("type") == "CANDIDATE"
                and isinstance(message := decode(bytes.fromhex(e["hex"])), Candidate)
            ]
            assert lines[-1] == "" and all(lines[:-1])
        assert session["closed"] == {"code": 1000, "reason": "recorded"}


def recorded_offer(session: dict[str, Any]) -> Offer:
    entry = next(e for e in session["frames"] if e.get("type") == "OFFER")
    offer = decode(bytes.fromhex(entry["hex"]))
    assert isinstance(offer, Offer)
    return offer


def client_frames(session: dict[str, Any]) -> list[dict[str, Any]]:
    """The client's signaling frames, up to and including its OPEN."""
    found = [e for e in session["frames"] if e["dir"] == "c2s" and "type" in e]
    return found[: [e["type"] for e in found].index("OPEN") + 1]


def named_candidates(session: dict[str, Any]) -> list[str]:
    """The candidates the client named: its ANSWER's a=candidate lines, then trickled."""
    lines: list[str] = []
    for entry in client_frames(session):
        message = decode(bytes.fromhex(entry["hex"]))
        if isinstance(message, Answer):
            sdp_lines = message.sdp.splitlines()
            lines += [line[2:] for line in sdp_lines if line.startswith("a=candidate:")]
        elif isinstance(message, Candidate) and message.candidate:
            lines.append(message.candidate)
    return lines


def admitted_by_peer_rule(address: str, own: set[Any]) -> bool:
    """remote_addresses="peer" for a WebSocket peer on loopback (docs/rtc.md): public
    addresses, loopback ones, and this host's own (those of the server's offer)."""
    ip = ipaddress.ip_address(address)
    return ip.is_global or ip.is_loopback or ip in own


def host_addresses(sdp: str) -> set[Any]:
    """The addresses of the host candidates in the server's own offer."""
    found = set()
    for line in sdp.splitlines():
        bits = line.split()
        if line.startswith("a=candidate:") and len(bits) >= 8 and bits[7] == "host":
            found.add(ipaddress.ip_address(bits[4]))
    return found


@dataclass
class Replay:
    conns: list[aiosocker.Connection]
    sessions: list[Any]

    @property
    def conn(self) -> aiosocker.Connection:
        (conn,) = self.conns
        return conn


async def replay_server(
    start_server: StartServer, session: dict[str, Any], **options: Any
) -> tuple[aiosocker.Server, Replay]:
    """A server with the recording's channels; the rtc stages time out after TIMEOUT.
    ``remote_addresses="peer"`` (the default, said out loud): the recorded IP
    candidates are checked only on a host that has those addresses, as the recording
    host had, so no check ever leaves the replaying host."""
    seen = Replay([], [])
    channels = recorded_offer(session).channels
    options = {"timeout": TIMEOUT, "remote_addresses": "peer", **options}

    def setup(conn: aiosocker.Connection) -> None:
        seen.conns.append(conn)
        seen.sessions.append(server_stages(conn, channels=channels, **options))

        @conn.stage()
        def control(message: bytes) -> bool:
            return False

    return await start_server(setup), seen


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s["name"])
async def test_recorded_chromium_session_replays(
    start_server: StartServer, session: dict[str, Any]
) -> None:
    server, seen = await replay_server(start_server, session)
    recorded_channels = recorded_offer(session).channels
    peer = await RawPeer.connect(server.port)
    offer_sdp = ""
    for entry in client_frames(session):
        if entry["type"] == "OPEN":  # the ANSWER and every CANDIDATE were taken
            await eventually(lambda: seen.conn.current == "rtc_open", what="rtc_open")
            assert not seen.conn.closed, (seen.conn.close_code, seen.conn.close_reason)
        peer.send_wire(bytes.fromhex(entry["wire"]))  # byte for byte, mask and all
        if entry["type"] == "READY":
            offer = await peer.message()
            assert isinstance(offer, Offer)
            assert offer.channels == recorded_channels
            offer_sdp = offer.sdp
    # Chromium is not behind these frames: no DTLS, the channels never open.
    code, reason = await peer.closed()
    assert (code, reason) == (4408, f"stage 'rtc_open' timed out after {TIMEOUT:g} s")
    conn = seen.conn
    await eventually(lambda: conn.closed, what="the server's side to close")
    assert conn.close_code == 4408
    assert [entry.stage for entry in conn.stages.history] == [
        "rtc_ready",
        "rtc_answer",
        "rtc_open",
    ]
    # mDNS names are dropped by design and not counted; IP addresses meet the policy.
    own = host_addresses(offer_sdp)
    addresses = [line.split()[4] for line in named_candidates(session)]
    ips = [a for a in addresses if not a.endswith(".local")]
    assert len(addresses) <= seen.sessions[0].max_remote_candidates
    expected_dropped = sum(not admitted_by_peer_rule(a, own) for a in ips)
    assert seen.sessions[0].dropped_candidates == expected_dropped
    if session["name"] == "trickle-ip":
        assert ips and len(ips) == len(addresses)
    else:
        assert addresses and not ips


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s["name"])
async def test_recorded_candidates_count_towards_the_limit(
    start_server: StartServer, session: dict[str, Any]
) -> None:
    """With max_remote_candidates one below what Chromium named, the last one closes
    with 4400 (in its ANSWER, or as a trickled CANDIDATE), naming the count."""
    named = len(named_candidates(session))
    assert named >= 1
    limit = named - 1
    server, _ = await replay_server(start_server, session, max_remote_candidates=limit)
    peer = await RawPeer.connect(server.port)
    for entry in client_frames(session):
        peer.send_wire(bytes.fromhex(entry["wire"]))
        if entry["type"] == "READY":
            assert isinstance(await peer.message(), Offer)
    trickled = any(e["type"] == "CANDIDATE" for e in client_frames(session))
    where = (
        f"stage 'rtc_open': the peer named {named}"
        if trickled
        else f"stage 'rtc_answer': the answer names {named}"
    )
    expected = f"{where} ICE candidates, over max_remote_candidates={limit}"
    assert await peer.closed() == (4400, expected)


# -- one byte flipped ---------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    """A client frame of the recording with one byte changed (XOR 0x80)."""

    index: int  # of the frame among client_frames()
    offset: int
    field: str
    payload: bytes
    stage: str  # where the server is when it arrives
    expected: tuple[int, str]


def flip_cases(session: dict[str, Any]) -> list[Flip]:
    """Each client frame with its magic, version and type flipped, and a CANDIDATE's
    flags and sdp_mid length too; what section 3 says the server does with each."""
    cases = []
    for index, entry in enumerate(client_frames(session)):
        payload = bytes.fromhex(entry["hex"])
        kind = entry["type"]
        stage = {"READY": "rtc_ready", "ANSWER": "rtc_answer"}.get(kind, "rtc_open")
        fields = [("magic", 1), ("version", 2), ("type", 3)]
        if kind == "CANDIDATE":
            fields += [("flags", 4), ("sdp_mid length", 7)]
        for name, offset in fields:
            flipped = bytearray(payload)
            flipped[offset] ^= 0x80
            before = f"stage {stage!r}: "
            if name == "magic":  # no longer signaling: an app frame, held back
                expected = (4408, f"stage {stage!r} timed out after {TIMEOUT:g} s")
            elif name == "version":
                expected = (
                    4400,
                    f"{before}unsupported signaling version 129; this peer speaks version 1",
                )
            elif name == "type":
                code = payload[3] ^ 0x80
                expected = (
                    4400,
                    f"{before}unknown signaling message type {code:#04x}; version 1 has 0x01..0x0a",
                )
            elif name == "flags":
                expected = (4400, f"{before}bad CANDIDATE: unknown flag bits 0x80")
            else:
                (mid_size,) = struct.unpack("!H", flipped[7:9])
                if payload[4] & 0x01:  # sdp_mid present: now it runs past the end
                    problem = (
                        f"truncated: sdp_mid needs {mid_size} bytes at offset 9,"
                        f" {len(payload) - 9} left"
                    )
                else:
                    problem = f"sdp_mid of {mid_size} bytes but not its flag: absent must be 0"
                expected = (4400, f"{before}bad CANDIDATE: {problem}")
            cases.append(Flip(index, offset, name, bytes(flipped), stage, expected))
    return cases


@pytest.mark.parametrize("session", SESSIONS, ids=lambda s: s["name"])
async def test_recorded_frames_with_a_byte_flipped_close_as_documented(
    start_server: StartServer, session: dict[str, Any]
) -> None:
    server, _ = await replay_server(start_server, session)
    frames = client_frames(session)

    async def replay(flip: Flip) -> tuple[int, str]:
        peer = await RawPeer.connect(server.port)
        for entry in frames[: flip.index]:  # unchanged up to the flipped one
            peer.send_wire(bytes.fromhex(entry["wire"]))
            if entry["type"] == "READY":
                assert isinstance(await peer.message(), Offer)
        peer.send(flip.payload)
        return await peer.closed()

    cases = flip_cases(session)
    assert {c.field for c in cases} >= {"magic", "version", "type"}
    results = await asyncio.gather(*(replay(c) for c in cases))

    def label(case: Flip) -> str:
        return f"{frames[case.index]['type']} (frame {case.index}), {case.field} flipped"

    pairs = list(zip(cases, results, strict=True))
    got = {label(c): (code, reason_is(reason, c.expected[1])) for c, (code, reason) in pairs}
    want = {label(c): (c.expected[0], True) for c in cases}
    assert got == want, [(label(c), result, c.expected) for c, result in pairs]
