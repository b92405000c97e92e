"""Helpers for the real-peer WebRTC tests in ``test_rtc.py``.

* :func:`rtc_app` builds a server ``setup``: app stages ``hello`` -> ``rtc_*`` ->
  ``control``, recording sessions, received messages and every peer connection made.
* :func:`rtc_client` is the Python client side of the same flow (``aiosocker.connect``).
* :class:`RawClient` is a bare ``websockets`` client that speaks the signaling envelope
  by hand (with its own aiortc peer where needed), for bad input and vanishing clients.
* :class:`UdpSinks` and :func:`hostile_answer` are for the reflector tests
  (``test_rtc_hostile.py``): UDP sockets on 127.0.0.1 that count what reaches them, and
  a hand-written ANSWER that names them as candidates.
* Fixtures, for a test module to import: ``interface`` (:func:`interface_fixture`: a
  non-loopback IPv4 interface, or a failure that says why it is needed) and ``serve``
  (:func:`serve_fixture`: :class:`RtcServers` started by the test, checked at teardown).
  They are defined under other names so that importing them does not shadow the test
  functions' parameters.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioice.ice import get_host_addresses
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import aiosocker
from aiosocker.rtc import Answer, ChannelSpec, Offer, Open, Ready, decode, encode, is_signaling
from aiosocker.rtc.peer import close_peer
from aiosocker.rtc.session import (
    DEFAULT_CHANNELS,
    ClientSession,
    RtcSession,
    ServerSession,
    client_stages,
    server_stages,
)

from .conftest import leftover_tasks

HOST = "127.0.0.1"
WAIT = 5.0  # bound on any single wait in these tests


async def eventually(
    condition: Callable[[], object], *, within: float = WAIT, what: str = "condition"
) -> None:
    """Poll ``condition`` until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


async def settle(condition: Callable[[], object], *, within: float = WAIT) -> bool:
    """Poll ``condition`` until it is true or ``within`` seconds pass; return it."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        await asyncio.sleep(0.005)
    return True


def open_peer_connections() -> list[RTCPeerConnection]:
    """Every RTCPeerConnection in the process that has not been closed."""
    return [
        obj
        for obj in gc.get_objects()
        # type(), not isinstance(): a dead weakref proxy raises on isinstance().
        if issubclass(type(obj), RTCPeerConnection) and obj.connectionState != "closed"
    ]


@pytest.fixture(name="interface")
def interface_fixture() -> None:
    """aioice offers no 127.0.0.1 candidate: WebRTC needs a non-loopback interface to
    gather one, or the server never starts ICE (see docs/rtc.md for loopback-only hosts).
    Fail loudly rather than skip."""
    assert get_host_addresses(use_ipv4=True, use_ipv6=False), (
        "no non-loopback IPv4 interface: aioice has no candidate to offer (docs/rtc.md)"
    )


StartServer = Callable[..., Awaitable[aiosocker.Server]]


class RtcServers:
    """socker servers on 127.0.0.1:0 that a test starts (``await start(setup, **options)``,
    over the ``defaults`` given here); :meth:`close` closes them and checks that no
    connection, peer connection or task outlived them. Make it in the test's loop."""

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.before = set(asyncio.all_tasks())
        self.servers: list[aiosocker.Server] = []

    async def start(self, setup: aiosocker.Setup, **options: Any) -> aiosocker.Server:
        server = aiosocker.serve(setup, HOST, 0, **{**self.defaults, **options})
        await server.start()
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for server in self.servers:
            await asyncio.wait_for(server.close(), WAIT)
            assert not server.connections
        assert not await leftover_tasks(self.before), "tasks outlived the servers"
        assert not open_peer_connections(), "a peer connection was left open"


@pytest.fixture(name="serve")
async def serve_fixture() -> AsyncIterator[StartServer]:
    """``await serve(setup, **options)``: a server on 127.0.0.1:0 (:class:`RtcServers`)."""
    servers = RtcServers()
    yield servers.start
    await servers.close()


def names(conn: aiosocker.Connection) -> list[str]:
    """The names of the stages ``conn`` entered, in order."""
    return [entry.stage for entry in conn.stages.history]


def dc_of(channel: Any) -> RTCDataChannel:
    """The aiortc channel under a socker Channel (private: to check the W3C options)."""
    dc: RTCDataChannel = channel.dc
    return dc


# -- the server side --------------------------------------------------------------------


@dataclass
class ServerSide:
    """What the server of :func:`rtc_app` saw."""

    conns: list[aiosocker.Connection] = field(default_factory=list)
    sessions: list[ServerSession] = field(default_factory=list)
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    """Every peer connection a session had when it opened or when its WebSocket closed."""
    got: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    """Messages received, by channel label."""
    control: list[bytes] = field(default_factory=list)
    open_calls: list[RtcSession] = field(default_factory=list)
    close_calls: list[RtcSession] = field(default_factory=list)

    def track(self, pc: RTCPeerConnection | None) -> None:
        if pc is not None and pc not in self.pcs:
            self.pcs.append(pc)

    @property
    def session(self) -> ServerSession:
        assert self.sessions, "no connection has reached setup yet"
        return self.sessions[-1]


def rtc_app(
    *,
    channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS,
    batch: bool = True,
    timeout: float = 5.0,
    on_close: Callable[[RtcSession], Any] | None = None,
    **options: Any,
) -> tuple[aiosocker.Setup, ServerSide]:
    """A server setup: ``hello`` (sends ``b"scene"``) -> rtc stages -> ``control``;
    ``options`` go to ``server_stages`` too."""
    side = ServerSide()

    def setup(conn: aiosocker.Connection) -> None:
        side.conns.append(conn)

        # Registered before the session's own hook, so it sees the peer before it closes.
        @conn.on_close
        def _capture(conn: aiosocker.Connection, code: int, reason: str) -> None:
            side.track(session.pc)

        @conn.stage()
        async def hello(message: bytes) -> bool:
            assert message == b"hello"
            await conn.send(b"scene")
            return True

        session = server_stages(conn, channels=channels, batch=batch, timeout=timeout, **options)
        side.sessions.append(session)
        for spec in session.specs:
            session.on_message(spec.label)(side.got[spec.label].append)

        @session.on_open
        def _opened(s: RtcSession) -> None:
            side.track(s.pc)
            side.open_calls.append(s)

        @session.on_close
        async def _closed(s: RtcSession) -> None:
            side.close_calls.append(s)
            if on_close is not None:
                result = on_close(s)
                if asyncio.iscoroutine(result):
                    await result

        @conn.stage()
        def control(message: bytes) -> bool:
            side.control.append(message)
            return False

    return setup, side


# -- the Python client side -------------------------------------------------------------


@dataclass
class ClientSide:
    """The Python client of :func:`rtc_client`."""

    conn: aiosocker.Connection
    session: ClientSession
    got: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    control: list[bytes] = field(default_factory=list)
    open_calls: list[RtcSession] = field(default_factory=list)
    close_calls: list[RtcSession] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_opened(self, times: int = 1) -> None:
        await eventually(lambda: self.session.opened >= times, what=f"client open #{times}")


@asynccontextmanager
async def rtc_client(
    url: str,
    *,
    labels: Sequence[str] = ("game",),
    batch: bool = True,
    stage_timeout: float = 5.0,
    wait_open: bool = True,
    on_close: Callable[[RtcSession], Any] | None = None,
) -> AsyncIterator[ClientSide]:
    """Connect with socker's client: ``scene`` (sends READY) -> rtc stages -> ``control``."""
    async with aiosocker.connect(url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            assert message == b"scene"
            await session.ready()
            return True

        session = client_stages(conn, batch=batch, timeout=stage_timeout)
        side = ClientSide(conn, session)
        for label in labels:
            session.on_message(label)(side.got[label].append)

        @session.on_open
        def _opened(s: RtcSession) -> None:
            side.open_calls.append(s)
            side.opened.set()

        @session.on_close
        async def _closed(s: RtcSession) -> None:
            side.close_calls.append(s)
            if on_close is not None:
                result = on_close(s)
                if asyncio.iscoroutine(result):
                    await result

        @conn.stage()
        def control(message: bytes) -> bool:
            side.control.append(message)
            return False

        await conn.send(b"hello")
        if wait_open:
            await asyncio.wait_for(side.opened.wait(), WAIT)
        yield side


# -- a client that speaks the envelope by hand --------------------------------------------


class RawClient:
    """A bare websockets client; the test drives each step of the handshake."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pc: RTCPeerConnection | None = None
        self.channels: dict[str, RTCDataChannel] = {}
        self.offer: Offer | None = None
        self.sent = 0
        """Payload bytes of every frame sent with :meth:`send` (all the steps below)."""

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> RawClient:
        return cls(await ws_connect(url, compression=None, additional_headers=headers))

    async def send(self, frame: bytes) -> None:
        self.sent += len(frame)
        await self.ws.send(frame)

    async def recv(self) -> bytes:
        data = await asyncio.wait_for(self.ws.recv(), WAIT)
        assert isinstance(data, bytes)
        return data

    async def hello(self) -> None:
        await self.send(b"hello")
        assert await self.recv() == b"scene"

    async def ready(self) -> None:
        await self.send(encode(Ready()))

    async def receive_offer(self) -> Offer:
        frame = await self.recv()
        assert is_signaling(frame)
        offer = decode(frame)
        assert isinstance(offer, Offer)
        self.offer = offer
        return offer

    async def answer(self, *, trickle: bool = False) -> list[str]:
        """Answer the offer with a real aiortc peer (no ICE servers).

        With ``trickle``, the answer goes without its candidates; they are returned (as
        ``candidate:...`` lines) for the test to send as CANDIDATE messages.
        """
        assert self.offer is not None
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("datachannel")
        def _announced(dc: RTCDataChannel) -> None:
            self.channels[dc.label] = dc

        await pc.setRemoteDescription(RTCSessionDescription(self.offer.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        lines = sdp.splitlines(keepends=True)
        candidates = [ln.strip()[2:] for ln in lines if ln.startswith("a=candidate:")]
        if trickle:
            sdp = "".join(ln for ln in lines if not ln.startswith("a=candidate:"))
        await self.send(encode(Answer(sdp)))
        return candidates if trickle else []

    async def confirm_open(self) -> None:
        """Wait for the announced channels, say OPEN, expect the server's OPEN."""
        assert self.offer is not None
        labels = {spec.label for spec in self.offer.channels}
        await eventually(
            lambda: (
                set(self.channels) == labels
                and all(dc.readyState == "open" for dc in self.channels.values())
            ),
            what="raw client channels open",
        )
        await self.send(encode(Open()))
        assert decode(await self.recv()) == Open()

    async def expect_close(self) -> tuple[int | None, str]:
        """Wait for the server to close; return its close code and reason."""
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason or ""

    async def frames_until_closed(self) -> list[bytes | str]:
        frames: list[bytes | str] = []
        try:
            async with asyncio.timeout(WAIT):
                async for frame in self.ws:
                    frames.append(frame)
        except ConnectionClosed:
            pass
        return frames

    def vanish(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.ws.transport.abort()

    async def close_pc(self) -> None:
        if self.pc is not None:
            await close_peer(self.pc)  # pc.close(), and aioice's consent-task race handled

    async def aclose(self) -> None:
        await self.close_pc()
        await self.ws.close()
        await self.ws.wait_closed()


# -- the reflector tests ------------------------------------------------------------------


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.packets += 1
        self.bytes += len(data)


class UdpSinks:
    """UDP sockets on 127.0.0.1 that count the datagrams (and their payload bytes) that
    reach them: the strangers a hostile peer names as its candidates."""

    def __init__(self) -> None:
        self._sinks: list[tuple[asyncio.DatagramTransport, _Counter, int]] = []

    @classmethod
    async def open(cls, count: int) -> UdpSinks:
        sinks = cls()
        loop = asyncio.get_running_loop()
        for _ in range(count):
            transport, counter = await loop.create_datagram_endpoint(_Counter, local_addr=(HOST, 0))
            sinks._sinks.append((transport, counter, transport.get_extra_info("sockname")[1]))
        return sinks

    @property
    def ports(self) -> list[int]:
        return [port for _, _, port in self._sinks]

    @property
    def packets(self) -> list[int]:
        """Datagrams received, per socket, in the order of :attr:`ports`."""
        return [counter.packets for _, counter, _ in self._sinks]

    @property
    def bytes(self) -> int:
        """Payload bytes received, all sockets together."""
        return sum(counter.bytes for _, counter, _ in self._sinks)

    def close(self) -> None:
        for transport, _, _ in self._sinks:
            transport.close()


def candidate_line(port: int, address: str = HOST, index: int = 0) -> str:
    """The shortest candidate line there is for ``address:port`` (``candidate:...``)."""
    return f"candidate:{index} 1 udp 1 {address} {port} typ host"


def hostile_answer(
    offer: Offer,
    candidates: Sequence[str] = (),
    *,
    ufrag: str = "Xy1z",
    end: bool = True,
    minimal: bool = False,
) -> str:
    """A hand-written ANSWER to ``offer``: valid enough to start ICE, naming
    ``candidates`` (``candidate:...`` lines), with no peer behind it. ``minimal``: only
    the lines aiortc and socker need, each as short as it may be, LF line ends (the
    fewest bytes a hostile peer can spend)."""
    mid = next((line[6:] for line in offer.sdp.splitlines() if line.startswith("a=mid:")), "0")
    fingerprint = ":".join(f"{b:02X}" for b in range(32))
    preamble = [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {mid}",
    ]
    lines = [
        *([] if minimal else preamble),
        "m=application 9 UDP/DTLS/SCTP " + ("x" if minimal else "webrtc-datachannel"),
        *([] if minimal else ["c=IN IP4 0.0.0.0"]),
        f"a=mid:{mid}",
        f"a=ice-ufrag:{ufrag}",
        "a=ice-pwd:0123456789abcdefghijkl",
        f"a=fingerprint:sha-256 {fingerprint}",
        "a=setup:active",
        "a=sctp-port:" + ("1" if minimal else "5000"),
        *(f"a={line}" for line in candidates),
        *(["a=end-of-candidates"] if end and candidates and not minimal else []),
    ]
    eol = "\n" if minimal else "\r\n"
    return eol.join(lines) + eol
