"""Record what Chromium sends over a socker WebSocket during full rtc handshakes, into
``chromium-session.json`` beside this script; ``test_foreign_replay.py`` replays it.

Run by hand (the test suite never runs it), from the repository's root, with the
project's virtualenv and Debian's Chromium::

    python tests/integration/recordings/record.py            # rewrites the recording
    python tests/integration/recordings/record.py --print    # prints it instead

How: an aiosocker server with ``server_stages`` (the channels below) serves a page and
``/aiosocker.js`` on 127.0.0.1. Chromium loads the page **through a recording proxy**
(also on 127.0.0.1) that passes every byte through unchanged and, on the connection that
upgrades to a WebSocket, parses the frames going each way: neither the server nor the
page is instrumented, and what is stored is what crossed the wire. For each frame the
recording keeps the message (the payload, unmasked) and, for the client's frames, the
frame exactly as Chromium put it on the wire (header and mask key included), so a
replay can send the very same bytes.

Three sessions, each a complete handshake that opened every channel, then a 1000 close
from the page:

* ``aiosocker.js``: the browser client as shipped (``aiosocker.rtc.clientStages``), in
  Chromium's default mode (local addresses hidden behind mDNS ``.local`` names). It does
  not trickle: its ANSWER carries the candidates gathered within ``gatherTimeout``.
* ``trickle-mdns``: a page that implements the client side itself, as a stranger
  would, with Chromium's ``RTCPeerConnection`` and only aiosocker.js's codec
  (``aiosocker.envelope``): it sends the ANSWER at once, then every candidate as
  Chromium reports it (a CANDIDATE each), then the end of candidates (an empty one),
  then OPEN. Chromium's default mode, so the candidates are ``.local`` names.
* ``trickle-ip``: the same page, with Chromium told to show its addresses
  (``WebRtcHideLocalIpsWithMdns`` disabled) and to use loopback
  (``--allow-loopback-in-peer-connection``), so the candidates carry IP addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

import aiosocker
from aiosocker import Route
from aiosocker.rtc import ChannelSpec, decode, server_stages

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "chromium-session.json"
HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`

CHANNELS = (
    ChannelSpec("game"),  # unordered, never retransmitted: announced in band
    ChannelSpec("chat", ordered=True, max_retransmits=None),  # reliable: in band
    ChannelSpec("sync", ordered=True, max_retransmits=None, negotiated=True, id=42),
)

BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>socker recording page</title></head><body>
<script type="module">
import * as aiosocker from "/aiosocker.js";
const { encode, decode } = aiosocker.envelope;

// The shipped browser client: aiosocker.rtc.clientStages (no trickle).
window.shipped = async () => {
  const conn = new aiosocker.Connection("/");
  const rtc = aiosocker.rtc.clientStages(conn, { timeout: 10000 });
  conn.stage("done", () => false);
  const opened = new Promise((resolve) => rtc.onOpen(resolve));
  await conn.open();
  await rtc.ready();
  await opened;
  return await conn.close(1000, "recorded");
};

// A client of our own on Chromium's RTCPeerConnection, as a stranger would write it from
// docs/protocol.md: ANSWER at once, then each candidate, then the end of candidates.
window.trickle = async () => {
  const conn = new aiosocker.Connection("/");
  const send = (message) => conn.send(encode(message));
  let pc = null;
  let resolveOpened;
  const opened = new Promise((resolve) => { resolveOpened = resolve; });
  conn.stage("rtc_offer", async (frame) => {
    const offer = decode(frame);
    if (offer.type === "ICE_SERVERS") return false;
    if (offer.type !== "OFFER") throw new Error(`expected OFFER, got ${offer.type}`);
    pc = new RTCPeerConnection({ iceServers: [] });
    const channels = [];
    let openSent = false;
    const check = () => {
      const all = channels.length === offer.channels.length;
      if (all && !openSent && channels.every((dc) => dc.readyState === "open")) {
        openSent = true;
        send({ type: "OPEN" });
      }
    };
    const watch = (dc) => { channels.push(dc); dc.addEventListener("open", check); check(); };
    for (const spec of offer.channels) {
      const options = aiosocker.envelope.channelOptions(spec);
      if (spec.negotiated) watch(pc.createDataChannel(spec.label, options));
    }
    pc.addEventListener("datachannel", (event) => watch(event.channel));
    let answered = false;
    const early = [];
    pc.addEventListener("icecandidate", (event) => {
      const c = event.candidate;
      const message = c === null
        ? { type: "CANDIDATE", candidate: "" }  // the end of candidates
        : { type: "CANDIDATE", candidate: c.candidate, sdpMid: c.sdpMid,
            sdpMLineIndex: c.sdpMLineIndex };
      if (answered) send(message); else early.push(message);
    });
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    send({ type: "ANSWER", sdp: pc.localDescription.sdp });
    answered = true;
    early.forEach(send);
    return true;
  }, { timeout: 10000 });
  conn.stage("rtc_open", (frame) => {
    if (decode(frame).type !== "OPEN") throw new Error("expected OPEN");
    resolveOpened();
    return true;
  }, { timeout: 10000 });
  conn.stage("done", () => false);
  await conn.open();
  send({ type: "READY" });
  await opened;
  const closed = await conn.close(1000, "recorded");
  pc.close();
  return closed;
};
window.pageReady = true;
</script></body></html>
"""

SESSIONS = (
    ("aiosocker.js", "shipped", "mdns"),
    ("trickle-mdns", "trickle", "mdns"),
    ("trickle-ip", "trickle", "ip"),
)


# -- the recording proxy ------------------------------------------------------------------


@dataclass
class Frame:
    dir: str  # "c2s" or "s2c"
    t_ms: float
    opcode: int
    payload: bytes
    wire: bytes


@dataclass
class Capture:
    """The frames of one WebSocket connection through the proxy."""

    start: float = field(default_factory=time.monotonic)
    frames: list[Frame] = field(default_factory=list)


class FrameParser:
    """Splits one direction's byte stream into WebSocket frames (RFC 6455, 5.2)."""

    def __init__(self, direction: str, capture: Capture) -> None:
        self.direction = direction
        self.capture = capture
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while (size := self._frame_size()) is not None and len(self.buffer) >= size:
            wire, self.buffer = self.buffer[:size], self.buffer[size:]
            self._add(wire)

    def _frame_size(self) -> int | None:
        b = self.buffer
        if len(b) < 2:
            return None
        length, head = b[1] & 0x7F, 2
        if length == 126:
            if len(b) < 4:
                return None
            (length,), head = struct.unpack("!H", b[2:4]), 4
        elif length == 127:
            if len(b) < 10:
                return None
            (length,), head = struct.unpack("!Q", b[2:10]), 10
        return head + (4 if b[1] & 0x80 else 0) + length

    def _add(self, wire: bytes) -> None:
        length, head = wire[1] & 0x7F, 2
        head += {126: 2, 127: 8}.get(length, 0)
        payload = wire[head:]
        if wire[1] & 0x80:
            key, payload = payload[:4], payload[4:]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        t_ms = round((time.monotonic() - self.capture.start) * 1000, 1)
        frame = Frame(self.direction, t_ms, wire[0] & 0x0F, payload, wire)
        assert wire[0] & 0x80, "a fragmented message: not expected from Chromium here"
        self.capture.frames.append(frame)


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of the server; captures WebSocket frames."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.captures: list[Capture] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, HOST, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(HOST, self.port)
        try:
            head = await c_reader.readuntil(b"\r\n\r\n")
            s_writer.write(head)
            capture = None
            if b"\r\nupgrade: websocket\r\n" in head.lower():
                capture = Capture()
                self.captures.append(capture)
                response = await s_reader.readuntil(b"\r\n\r\n")
                c_writer.write(response)
                if not response.startswith(b"HTTP/1.1 101"):
                    capture = None
            up = FrameParser("c2s", capture) if capture else None
            down = FrameParser("s2c", capture) if capture else None
            await asyncio.gather(
                self._pipe(c_reader, s_writer, up), self._pipe(s_reader, c_writer, down)
            )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for writer in (s_writer, c_writer):
                writer.close()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: FrameParser | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()


# -- Chromium -----------------------------------------------------------------------------


async def launch(pw: Any, mode: str) -> Any:
    if mode == "mdns":  # Chromium's defaults (as a player's browser)
        return await pw.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
    # Show local addresses and use loopback. Chromium honours only the last
    # --disable-features flag, so extend Playwright's own (read from chrome://version).
    probe = await pw.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
    page = await probe.new_page()
    await page.goto("chrome://version")
    line = (await page.inner_text("#command_line")).split()
    await probe.close()
    (theirs,) = [arg for arg in line if arg.startswith("--disable-features=")]
    return await pw.chromium.launch(
        executable_path=CHROMIUM,
        ignore_default_args=[theirs],
        args=[
            *BASE_ARGS,
            "--allow-loopback-in-peer-connection",
            f"{theirs},WebRtcHideLocalIpsWithMdns",
        ],
    )


def describe(frame: Frame) -> dict[str, Any]:
    entry: dict[str, Any] = {"dir": frame.dir, "t_ms": frame.t_ms}
    if frame.opcode == 0x2:
        entry["type"] = type(decode(frame.payload)).__name__.upper()
        entry["hex"] = frame.payload.hex()
    else:
        entry["opcode"] = frame.opcode
        entry["hex"] = frame.payload.hex()
    if frame.dir == "c2s":
        entry["wire"] = frame.wire.hex()
    return entry


async def record() -> dict[str, Any]:
    def setup(conn: aiosocker.Connection) -> None:
        server_stages(conn, channels=CHANNELS, timeout=10)

        @conn.stage()
        def done(message: bytes) -> bool:
            return False

    sessions = []
    async with aiosocker.serve(setup, HOST, 0, routes={"/record": Route.html(PAGE)}) as server:
        proxy = Proxy(server.port)
        port = await proxy.start()
        try:
            async with async_playwright() as pw:
                for name, function, mode in SESSIONS:
                    browser = await launch(pw, mode)
                    version = browser.version
                    page = await browser.new_page()
                    await page.goto(f"http://{HOST}:{port}/record")
                    await page.wait_for_function("window.pageReady === true")
                    before = len(proxy.captures)
                    closed = await page.evaluate(f"window.{function}()")
                    await asyncio.sleep(0.2)  # the close frames cross the proxy
                    await browser.close()
                    (capture,) = proxy.captures[before:]
                    frames = [describe(f) for f in capture.frames]
                    sessions.append(
                        {
                            "name": name,
                            "client": function,
                            "chromium_mode": mode,
                            "closed": closed,
                            "frames": frames,
                        }
                    )
                    print(f"{name}: {len(frames)} frames, closed {closed}", file=sys.stderr)
        finally:
            await proxy.close()
    return {
        "note": (
            "Recorded by tests/integration/recordings/record.py (run by hand; see its"
            " docstring): Chromium loads a page from an aiosocker server on 127.0.0.1"
            " through a proxy that passes every byte on unchanged and parses the"
            " WebSocket frames. 'hex' is each frame's message (unmasked payload); 'wire'"
            " is a client frame exactly as Chromium sent it, header and mask key"
            " included. Binary frames carry their signaling type; control frames"
            " (close) their opcode. The server: server_stages(conn, channels=CHANNELS)"
            " with the channels the recorded OFFER lists."
        ),
        "chromium": version,
        "aiosocker": aiosocker.__version__,
        "recorded": datetime.date.today().isoformat(),
        "sessions": sessions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print instead of writing")
    args = parser.parse_args()
    recording = asyncio.run(record())
    text = json.dumps(recording, indent=1) + "\n"
    if args.print:
        sys.stdout.write(text)
    else:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(Path.cwd())}", file=sys.stderr)


if __name__ == "__main__":
    main()
