"""Ready-made stages that open WebRTC DataChannels over a socker connection.

Server (offers)                       Client (answers)
---------------                       ----------------
app stages (e.g. hello -> scene)      app stages (e.g. scene: ``await rtc.ready()``)
``rtc_ready``  <- READY               ``rtc_offer``  <- OFFER, sends ANSWER, then OPEN
``rtc_answer`` <- ANSWER              ``rtc_open``   <- OPEN
``rtc_open``   <- OPEN, sends OPEN    app's final stages
app's final stages

Each rtc stage has a timeout (expiry closes with 4408). Malformed or out-of-order
signaling, or an SDP the WebRTC stack rejects, closes with 4400. The peer connection
lives exactly as long as the WebSocket: closing one closes the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, TypeVar, Unpack

from ..background import Background
from ..connection import Connection
from ..errors import ConnectionClosedError, SignalingError
from .batch import DEFAULT_MAX_SIZE
from .channel import DEFAULT_MAX_BUFFERED, Channel, MessageHandler
from .envelope import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    Message,
    Offer,
    Open,
    Ready,
    Renegotiate,
    decode,
    encode,
    is_signaling,
    validate_channels,
)
from .peer import (
    IceServer,
    accept_offer,
    add_candidate,
    answer_offer,
    close_peer,
    create_channel,
    make_offer,
    new_peer,
    parse_candidate,
)

if TYPE_CHECKING:
    from aiortc import RTCIceCandidate, RTCPeerConnection

__all__ = ["DEFAULT_CHANNELS", "RtcOptions", "RtcSession", "client_stages", "server_stages"]

logger = logging.getLogger("aiosocker.rtc")

DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (ChannelSpec("game"),)
"""One unordered, unreliable channel (``ordered=False, maxRetransmits=0``): UDP-like."""

SERVER_STAGES = ("rtc_ready", "rtc_answer", "rtc_open")
CLIENT_STAGES = ("rtc_offer", "rtc_open")

Role: TypeAlias = Literal["server", "client"]
SessionHook: TypeAlias = Callable[["RtcSession"], "Awaitable[None] | None"]
M = TypeVar("M", bound=Message)


class RtcOptions(TypedDict, total=False):
    """Options of :func:`server_stages` and :func:`client_stages`.

    * ``ice_servers``: STUN/TURN servers; default none (no public server is asked).
    * ``timeout``: seconds each rtc stage may take (default 5); expiry closes with 4408.
    * ``batch``: pack small messages sent in one loop iteration into one frame (on).
    * ``max_frame``: largest batched frame, in bytes (16 KiB: safe for every browser).
    * ``max_buffered``: an unreliable channel drops updates while more bytes than this
      wait in the WebRTC stack (256 KiB; stale updates are worse than none).
    """

    ice_servers: Sequence[IceServer]
    timeout: float
    batch: bool
    max_frame: int
    max_buffered: int


class RtcSession:
    """The WebRTC side of one connection: its peer connection and channels.

    Made by :func:`server_stages` or :func:`client_stages`, which add the rtc stages to
    the connection's chain where they are called.
    """

    def __init__(
        self,
        conn: Connection,
        role: Role,
        *,
        channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS,
        ice_servers: Sequence[IceServer] = (),
        timeout: float = 5.0,
        batch: bool = True,
        max_frame: int = DEFAULT_MAX_SIZE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self.conn = conn
        self.role: Role = role
        self.specs = validate_channels(channels)
        self.ice_servers = tuple(ice_servers)
        self.timeout = timeout
        self.batch = batch
        self.max_frame = max_frame
        self.max_buffered = max_buffered
        self.pc: RTCPeerConnection | None = None
        """The aiortc peer connection, once the handshake has made one."""
        self.channels: dict[str, Channel] = {}
        """Open (or opening) channels by label."""
        self.opened = 0
        """How many times the channels have opened (renegotiations count)."""
        self._handlers: dict[str, MessageHandler] = {}
        self._open_hooks: list[SessionHook] = []
        self._close_hooks: list[SessionHook] = []
        self._background = Background()
        self._closing_peer = False
        self._lost_pc: RTCPeerConnection | None = None  # the peer on_close was told about
        # A fresh negotiation was asked for and has not started: the client sent READY and
        # awaits the OFFER, or the server sent RENEGOTIATE and awaits READY.
        self._asked = False
        self._all_open = asyncio.Event()
        names = SERVER_STAGES if role == "server" else CLIENT_STAGES
        self._first = len(conn.stages)
        for name in names:
            conn.add(getattr(self, f"_{role}_{name}"), name=name, timeout=timeout)
        self._last = len(conn.stages) - 1
        conn.intercept(self._intercept)
        conn.on_close(self._on_conn_close)

    # -- what the app uses -----------------------------------------------------------

    def on_message(self, label: str | None = None) -> Callable[[MessageHandler], MessageHandler]:
        """Decorator: handle messages of channel ``label`` (default: the first)."""
        label = self._label(label)

        def register(handler: MessageHandler) -> MessageHandler:
            self._handlers[label] = handler
            if label in self.channels:
                self.channels[label].on_message(handler)
            return handler

        return register

    def on_open(self, hook: SessionHook) -> SessionHook:
        """Call ``hook(session)`` each time all channels are open on both sides."""
        self._open_hooks.append(hook)
        return hook

    def on_close(self, hook: SessionHook) -> SessionHook:
        """Call ``hook(session)`` when a channel or the peer connection dies while the
        WebSocket lives on (``await session.renegotiate()`` starts over). Called once per
        peer connection, however many of its channels die; not for :meth:`close` or
        :meth:`renegotiate`, nor when the WebSocket closes."""
        self._close_hooks.append(hook)
        return hook

    def channel(self, label: str | None = None) -> Channel:
        """The channel called ``label`` (default: the first)."""
        label = self._label(label)
        try:
            return self.channels[label]
        except KeyError:
            stage = self.conn.current
            raise LookupError(f"channel {label!r} is not open yet (stage {stage!r})") from None

    def send(self, data: bytes, label: str | None = None) -> bool:
        """Send on channel ``label`` (default: the first); see :meth:`Channel.send`."""
        channel = self.channels.get(self._label(label))
        if channel is None:
            return False
        return channel.send(data)

    @property
    def is_open(self) -> bool:
        """Whether every channel is open."""
        return len(self.channels) == len(self.specs) and all(
            ch.is_open for ch in self.channels.values()
        )

    async def ready(self) -> None:
        """Client: tell the server we are ready for an offer (call it from the stage
        before the rtc stages, as the Go client did after building its scene)."""
        if self.role != "client":
            raise RuntimeError("ready() is the client's call; the server waits for READY")
        self._asked = True
        await self.conn.send(encode(Ready()))

    async def renegotiate(self) -> None:
        """Start over with a fresh offer (e.g. after a channel died).

        Does nothing until the rtc stages are done, or while a fresh offer is coming
        already, so both sides may call it when they hear :meth:`on_close`. (A handshake
        that fails midway ends with its stage's timeout.)
        """
        if self._asked or self.conn.stages.index <= self._last:
            return
        self._asked = True  # before any await: a second call meanwhile does nothing
        if self.role == "server":
            # The client closes its peer and sends READY; rtc_ready closes ours. Until
            # then our channels die on purpose: no on_close for them.
            self._lost_pc = self.pc
            await self.conn.send(encode(Renegotiate("server asked")))
            return
        await self._close_peer()
        self.conn.jump("rtc_offer")
        await self.conn.send(encode(Ready()))

    async def close(self, reason: str = "") -> None:
        """Close the peer connection on purpose; the WebSocket stays open.

        The peer is told with a BYE, so it closes its side too without taking the loss
        for a failure (its ``on_close`` hooks do not run; nobody renegotiates).
        """
        if self.pc is not None and not self.conn.closed:
            with contextlib.suppress(ConnectionClosedError):
                await self.conn.send(encode(Bye(reason)))
        await self._close_peer()

    # -- stages: server --------------------------------------------------------------

    async def _server_rtc_ready(self, message: bytes) -> bool:
        self._expect(message, Ready)
        self._asked = False
        await self._close_peer()
        pc = self.pc = new_peer(self.ice_servers)
        self._watch(pc)
        for spec in self.specs:
            self._attach(create_channel(pc, spec), spec)
        sdp = await make_offer(pc)
        await self.conn.send(encode(Offer(sdp, self.specs)))
        return True

    async def _server_rtc_answer(self, message: bytes) -> bool:
        answer = self._expect(message, Answer)
        assert self.pc is not None
        await answer_offer(self.pc, answer.sdp)
        return True

    async def _server_rtc_open(self, message: bytes) -> bool:
        self._expect(message, Open)
        # The side that created a channel sees it open only after the peer's ack.
        await asyncio.gather(*(ch.wait_open() for ch in self.channels.values()))
        await self.conn.send(encode(Open()))
        self._opened()
        return True

    # -- stages: client --------------------------------------------------------------

    async def _client_rtc_offer(self, message: bytes) -> bool:
        offer = self._expect(message, Offer)
        self._asked = False
        self.specs = validate_channels(offer.channels)
        await self._close_peer()
        pc = self.pc = new_peer(self.ice_servers)
        self._watch(pc)
        by_label = {spec.label: spec for spec in self.specs}
        for spec in self.specs:
            if spec.negotiated:  # both sides create it, with the same id
                self._attach(create_channel(pc, spec), spec)

        @pc.on("datachannel")
        def _announced(dc: Any) -> None:
            spec = by_label.get(dc.label)
            if spec is None:
                logger.warning("ignoring channel %r the offer did not list", dc.label)
                return
            self._attach(dc, spec)

        answer = await accept_offer(pc, offer.sdp)
        await self.conn.send(encode(Answer(answer)))
        self._background.spawn(self._confirm_open(pc))
        return True

    async def _confirm_open(self, pc: RTCPeerConnection) -> None:
        if not self.is_open:  # an offer with no channels is open at once
            await self._all_open.wait()  # announced channels arrive one by one
        if self.pc is pc and not self.conn.closed:
            await self.conn.send(encode(Open()))

    async def _client_rtc_open(self, message: bytes) -> bool:
        self._expect(message, Open)
        self._opened()
        return True

    # -- plumbing --------------------------------------------------------------------

    def _label(self, label: str | None) -> str:
        if label is None:
            return self.specs[0].label
        if all(spec.label != label for spec in self.specs) and self.role == "server":
            raise LookupError(f"no channel {label!r}; the channels are {self._labels()}")
        return label

    def _labels(self) -> list[str]:
        return [spec.label for spec in self.specs]

    def _expect(self, frame: bytes, kind: type[M]) -> M:
        message = decode(frame)  # SignalingError on garbage: the connection closes 4400
        if isinstance(message, kind):
            return message
        if isinstance(message, Error):
            raise SignalingError(f"peer reported error {message.code}: {message.reason}")
        expected, got = kind.__name__.upper(), type(message).__name__.upper()
        raise SignalingError(f"expected {expected} in stage {self.conn.current!r}, got {got}")

    def _intercept(self, frame: bytes) -> bool:
        # Signaling that arrives outside the rtc stages (renegotiation, or a protocol
        # error), and trickled candidates, in the rtc stages or after them.
        index = self.conn.stages.index
        if not is_signaling(frame):
            if self._first <= index <= self._last:
                # An app message mid-handshake (e.g. a broadcast that crossed a
                # renegotiation): the stage after the rtc stages gets it, in order.
                self.conn.defer(frame)
                return True
            return False
        message = decode(frame)  # SignalingError on garbage: the connection closes 4400
        if isinstance(message, Candidate) and index >= self._first:
            self._trickled(message)
            return True
        if self._first <= index <= self._last:
            # Both sides may renegotiate at once: our READY crossed the server's
            # RENEGOTIATE, and the offer answering our READY follows it. Drop it.
            return self.role == "client" and self._asked and isinstance(message, Renegotiate)
        stage = self.conn.current
        if index < self._first:
            raise SignalingError(f"{type(message).__name__.upper()} before the rtc stages")
        if isinstance(message, Bye):  # the peer closed on purpose: no failure, no hooks
            self._background.spawn(self._shut(*self._detach_peer()))
            return True
        if isinstance(message, Error):
            logger.warning("peer reported error %d: %s", message.code, message.reason)
            return True
        if self.role == "server" and isinstance(message, Ready):
            self.conn.jump("rtc_ready")  # the client renegotiates; rtc_ready takes it
            return False
        if self.role == "client" and isinstance(message, Renegotiate):
            self._background.spawn(self.renegotiate())
            return True
        raise SignalingError(f"unexpected {type(message).__name__.upper()} in stage {stage!r}")

    def _trickled(self, message: Candidate) -> None:
        pc = self.pc
        if pc is None:  # closed on purpose meanwhile: a late candidate is harmless
            logger.debug("ignoring a CANDIDATE: no peer connection")
            return
        if pc.remoteDescription is None:
            expected = "ANSWER" if self.role == "server" else "OFFER"
            raise SignalingError(f"CANDIDATE before the {expected}")
        candidate = parse_candidate(message.candidate, message.sdp_mid, message.sdp_mline_index)
        if candidate is not None:  # never awaited inline: the signaling path goes on
            self._background.spawn(self._add_candidate(pc, candidate))

    async def _add_candidate(self, pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
        try:
            await add_candidate(pc, candidate)
        except Exception as exc:
            logger.warning("could not add a trickled candidate: %r", exc)

    def _attach(self, dc: Any, spec: ChannelSpec) -> None:
        channel = Channel(
            dc, spec, batch=self.batch, max_frame=self.max_frame, max_buffered=self.max_buffered
        )
        handler = self._handlers.get(spec.label)
        if handler is not None:
            channel.on_message(handler)
        channel.on_close(self._channel_closed)
        channel.on_open(self._channel_opened)
        self.channels[spec.label] = channel
        self._channel_opened(channel)  # announced channels arrive already open

    def _channel_opened(self, channel: Channel) -> None:
        if self.is_open:
            self._all_open.set()

    def _watch(self, pc: RTCPeerConnection) -> None:
        @pc.on("connectionstatechange")
        def _changed() -> None:
            if pc is self.pc and pc.connectionState == "failed":
                self._lost()

    def _channel_closed(self, channel: Channel) -> None:
        if self.channels.get(channel.label) is channel:
            self._lost()

    def _lost(self) -> None:
        if self._closing_peer or self.conn.closed or self._lost_pc is self.pc:
            return
        self._lost_pc = self.pc  # once per peer connection, however many channels die
        self._run_hooks(self._close_hooks)

    def _opened(self) -> None:
        self.opened += 1
        self._run_hooks(self._open_hooks)

    def _run_hooks(self, hooks: list[SessionHook]) -> None:
        for hook in hooks:
            self._background.call("rtc session hook", hook, self)

    async def _close_peer(self) -> None:
        await self._shut(*self._detach_peer())

    def _detach_peer(self) -> tuple[RTCPeerConnection | None, dict[str, Channel]]:
        # At once, so events the old peer still fires are not taken for a failure.
        pc, self.pc = self.pc, None
        self._lost_pc = None
        channels, self.channels = self.channels, {}
        self._all_open.clear()
        return pc, channels

    async def _shut(self, pc: RTCPeerConnection | None, channels: dict[str, Channel]) -> None:
        if pc is None:
            return
        self._closing_peer = True
        try:
            for channel in channels.values():
                channel.close()
            await close_peer(pc)
        finally:
            self._closing_peer = False

    async def _on_conn_close(self, conn: Connection, code: int, reason: str) -> None:
        # aiortc alone would notice a vanished peer only after ~30 s.
        await self._background.finish(cancel=True)
        await self._close_peer()
        await self._background.finish(cancel=False)


def server_stages(
    conn: Connection,
    *,
    channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS,
    **options: Unpack[RtcOptions],
) -> RtcSession:
    """Add the server's rtc stages (``rtc_ready``, ``rtc_answer``, ``rtc_open``) here:
    after the stages added so far. ``channels`` are the channels to open (default: one
    unordered, unreliable ``"game"``); the other options are :class:`RtcOptions`."""
    return RtcSession(conn, "server", channels=channels, **options)


def client_stages(conn: Connection, **options: Unpack[RtcOptions]) -> RtcSession:
    """Add the client's rtc stages (``rtc_offer``, ``rtc_open``) here; the server's offer
    says which channels to expect. Call ``await session.ready()`` from the stage before.
    The options are :class:`RtcOptions`."""
    return RtcSession(conn, "client", **options)
