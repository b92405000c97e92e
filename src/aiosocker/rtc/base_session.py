"""What the server's and the client's rtc sessions share: :class:`RtcSession`.

The base owns the channels, the hooks, sending, the signaling that arrives outside the
rtc stages (:meth:`Connection.intercept`), trickled candidates, the peer connection's
life and its closing (BYE). A subclass says which stages it runs, as data
(:attr:`RtcSession.STAGES`, added to the chain by the base), and answers the few
questions where the two sides differ: who may call :meth:`~RtcSession.ready`, what
:meth:`~RtcSession.renegotiate` sends, what signaling starts a new handshake after the
rtc stages, and what happens on the peer's OPEN.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from types import MethodType
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypedDict, TypeVar

from ..background import Background
from ..connection import Connection
from ..errors import ConnectionClosedError, SignalingError
from .batch import DEFAULT_MAX_SIZE
from .channel import (
    DEFAULT_CHANNEL_TIMEOUT,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_PING_INTERVAL,
    Channel,
    MessageHandler,
    _seconds,
)
from .envelope import (
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    Message,
    Open,
    decode,
    encode,
    is_signaling,
    validate_channels,
)
from .peer import (
    ICE_TRANSPORT_POLICIES,
    IceServer,
    IceTransportPolicy,
    add_candidate,
    close_peer,
    new_peer,
    parse_candidate,
)
from .sdp import (
    DEFAULT_MAX_REMOTE_CANDIDATES,
    AddressPolicy,
    CandidateGuard,
    IPAddress,
    RemoteCandidate,
    SdpKind,
    peer_address,
)

if TYPE_CHECKING:
    from aiortc import RTCIceCandidate, RTCPeerConnection

__all__ = ["DEFAULT_CHANNELS", "RtcOptions", "RtcSession", "SessionHook", "StageHandler"]

logger = logging.getLogger("aiosocker.rtc")

DEFAULT_CHANNELS: tuple[ChannelSpec, ...] = (ChannelSpec("game"),)
"""One unordered, unreliable channel (``ordered=False, maxRetransmits=0``): UDP-like."""

SessionHook: TypeAlias = Callable[["RtcSession"], "Awaitable[None] | None"]
StageHandler: TypeAlias = Callable[[Any, bytes], "Awaitable[bool | str]"]
"""An rtc stage as a subclass declares it: an ``async`` method, unbound."""
M = TypeVar("M", bound=Message)


class RtcOptions(TypedDict, total=False):
    """Options of :func:`server_stages` and :func:`client_stages`.

    * ``ice_servers``: STUN/TURN servers; default none (no public server is asked).
    * ``timeout``: seconds each rtc stage may take (default 5); expiry closes with 4408.
    * ``batch``: pack small messages sent in one loop iteration into one frame (on).
    * ``max_frame``: largest batched frame, in bytes (16 KiB: safe for every browser).
    * ``max_buffered``: an unreliable channel drops updates while more bytes than this
      wait in the WebRTC stack (256 KiB; stale updates are worse than none).
    * ``max_remote_candidates``: ICE candidates the peer may name per handshake, in its
      SDP and trickled together (16); one more closes the connection with 4400. Each is
      an address this side sends connectivity checks to.
    * ``remote_addresses``: which of those addresses may be checked at all (an
      :class:`~aiosocker.rtc.sdp.AddressPolicy` rule or a list of them): ``"peer"``
      (the server's default: public addresses, or the WebSocket peer's own kind),
      ``"public"``, ``"any"`` (the client's default), networks such as ``"10.0.0.0/8"``.
      Candidates outside it are dropped and counted (``session.dropped_candidates``).
    * ``ice_transport_policy``: ``"all"`` (default) or ``"relay"``: gather and use TURN
      relay candidates only, as WebRTC's ``iceTransportPolicy`` (needs a TURN server:
      ``ice_servers``, or on the server ``turn=``; on the client, also the ones the
      server sends).
    * ``ping_interval``: seconds between the PINGs each channel sends its peer while it
      answers (2; ``None``: no PINGs from this side, so no ``rtt`` and no timeout);
      ``session.rtt`` is the last round trip measured.
    * ``channel_timeout``: seconds a channel waits for a PONG before it counts the peer
      as gone (10; ``None``: never): the channel closes, ``session.close_reason`` says
      why and the ``on_close`` hooks run, much sooner than aiortc's ~30 s.
    """

    ice_servers: Sequence[IceServer]
    timeout: float
    batch: bool
    max_frame: int
    max_buffered: int
    max_remote_candidates: int
    remote_addresses: str | Sequence[str]
    ice_transport_policy: IceTransportPolicy
    ping_interval: float | None
    channel_timeout: float | None


class RtcSession(abc.ABC):
    """The WebRTC side of one connection: its peer connection and channels.

    Made by :func:`server_stages` (a :class:`ServerSession`) or :func:`client_stages` (a
    :class:`ClientSession`), which add the rtc stages to the connection's chain where
    they are called.
    """

    STAGES: ClassVar[tuple[tuple[str, StageHandler], ...]]
    """The rtc stages, in order: ``(name, method)``; each method is bound to the session
    and added to the connection's chain with the session's ``timeout``."""

    _REMOTE_SDP: ClassVar[str]
    """The message that brings the peer's SDP (a CANDIDATE before it is an error)."""

    _REMOTE_ADDRESSES: ClassVar[str]
    """The default ``remote_addresses`` rule on this side."""

    def __init__(
        self,
        conn: Connection,
        *,
        channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS,
        ice_servers: Sequence[IceServer] = (),
        timeout: float = 5.0,
        batch: bool = True,
        max_frame: int = DEFAULT_MAX_SIZE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_remote_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES,
        remote_addresses: str | Sequence[str] | None = None,
        ice_transport_policy: IceTransportPolicy = "all",
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        channel_timeout: float | None = DEFAULT_CHANNEL_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.ping_interval = _seconds("ping_interval", ping_interval)
        """Seconds between each channel's PINGs (``None``: this side sends none)."""
        self.channel_timeout = _seconds("channel_timeout", channel_timeout)
        """Seconds without a PONG before a channel counts its peer as gone."""
        self.rtt: float | None = None
        """The last round trip a channel's PING measured, in seconds (``None`` before
        the first); kept across renegotiations."""
        self.close_reason: str | None = None
        """Why the ``on_close`` hooks last ran: e.g. ``"channel 'game' closed"``, ``"the
        peer connection failed"``, or ``"channel 'game' did not answer PINGs for 10 s
        (channel_timeout=10 s)"`` (``None`` until they have)."""
        self.specs = validate_channels(channels)
        if (
            not isinstance(max_remote_candidates, int)
            or isinstance(max_remote_candidates, bool)
            or max_remote_candidates < 0
        ):
            raise ValueError(
                f"max_remote_candidates must be an int >= 0, not {max_remote_candidates!r}"
            )
        self.max_remote_candidates = max_remote_candidates
        """ICE candidates the peer may name per handshake (SDP and trickle together)."""
        self.remote_addresses = AddressPolicy(
            self._REMOTE_ADDRESSES if remote_addresses is None else remote_addresses
        )
        """Which remote candidate addresses this side sends connectivity checks to."""
        self.dropped_candidates = 0
        """Remote candidates dropped by :attr:`remote_addresses`, over the connection's
        life (mDNS ``.local`` candidates are not counted: they are never used)."""
        self._guard: CandidateGuard | None = None  # the current handshake's
        self.ice_servers = tuple(ice_servers)
        if ice_transport_policy not in ICE_TRANSPORT_POLICIES:
            raise ValueError(
                f"ice_transport_policy is 'all' or 'relay', not {ice_transport_policy!r}"
            )
        self.ice_transport_policy: IceTransportPolicy = ice_transport_policy
        """``"relay"``: relay candidates only."""
        self.timeout = timeout
        self.batch = batch
        self.max_frame = max_frame
        self.max_buffered = max_buffered
        self.pc: RTCPeerConnection | None = None
        """The aiortc peer connection, once the handshake has made one."""
        self.channels: dict[str, Channel] = {}
        """Open (or opening) channels by label."""
        conn.provide_channels(self._channel_of)  # broadcast(channel=...) reaches them
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
        self._started: float | None = None  # when this handshake's peer was made
        self._after_open: str | None = None  # where a resumed session goes after rtc_open
        conn.route_resume(self._resume_route)
        self._first = len(conn.stages)
        for name, handler in self.STAGES:
            conn.add(MethodType(handler, self), name=name, timeout=timeout)
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
        :meth:`renegotiate`, nor when the WebSocket closes. :attr:`close_reason` says
        why (it is set before the hooks run)."""
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

    def send_latest(self, key: Hashable, data: bytes, label: str | None = None) -> bool:
        """Send ``data`` as the newest state of ``key`` on channel ``label`` (default: the
        first): while the link is congested only the newest unsent message per key
        waits; see :meth:`Channel.send_latest`."""
        channel = self.channels.get(self._label(label))
        if channel is None:
            return False
        return channel.send_latest(key, data)

    @property
    def is_open(self) -> bool:
        """Whether every channel is open."""
        return len(self.channels) == len(self.specs) and all(
            ch.is_open for ch in self.channels.values()
        )

    async def ready(self) -> None:
        """Client: tell the server we are ready for an offer (call it from the stage
        before the rtc stages, as the Go client did after building its scene)."""
        raise RuntimeError("ready() is the client's call; the server waits for READY")

    async def renegotiate(self) -> None:
        """Start over with a fresh offer (e.g. after a channel died).

        Does nothing until the rtc stages are done, or while a fresh offer is coming
        already, so both sides may call it when they hear :meth:`on_close`. (A handshake
        that fails midway ends with its stage's timeout.)
        """
        if self._asked or self.conn.stages.index <= self._last:
            return
        self._asked = True  # before any await: a second call meanwhile does nothing
        await self._ask_again()

    async def close(self, reason: str = "") -> None:
        """Close the peer connection on purpose; the WebSocket stays open.

        The peer is told with a BYE, so it closes its side too without taking the loss
        for a failure (its ``on_close`` hooks do not run; nobody renegotiates).
        """
        if self.pc is not None and not self.conn.closed:
            with contextlib.suppress(ConnectionClosedError):
                await self.conn.send(encode(Bye(reason)))
        await self._close_peer()

    # -- where the two sides differ --------------------------------------------------

    @abc.abstractmethod
    async def _ask_again(self) -> None:
        """:meth:`renegotiate`, once it is decided: ask for a fresh handshake."""

    @abc.abstractmethod
    def _after_stages(self, message: Message) -> bool | None:
        """Signaling after the rtc stages (not BYE, ERROR or CANDIDATE): ``True`` if it
        was consumed, ``False`` to let the (new) current stage take it, ``None`` if it
        does not belong here (the connection closes with 4400)."""

    def _crossed(self, message: Message) -> bool:
        """Whether to drop signaling (not a CANDIDATE) that arrives in the rtc stages
        because it crossed our own; else the current stage takes it."""
        return False

    @abc.abstractmethod
    async def _answer_open(self) -> None:
        """In ``rtc_open``, on the peer's OPEN: what this side does before its channels
        count as open on both sides."""

    # -- the stages' shared steps ----------------------------------------------------

    async def _fresh_peer(self, extra: Sequence[IceServer] = ()) -> RTCPeerConnection:
        """A new peer connection in place of the old one (a handshake starts), with
        :attr:`ice_servers` and then ``extra`` (this handshake's own)."""
        self._asked = False
        await self._close_peer()
        pc = self.pc = new_peer((*self.ice_servers, *extra), self.ice_transport_policy)
        self._watch(pc)
        self._started = time.monotonic()
        return pc

    async def _rtc_open(self, message: bytes) -> bool | str:
        self._expect(message, Open)
        await self._answer_open()
        self._opened()
        meter = self.conn.meter
        if meter is not None and self._started is not None:
            meter.rtc_opened(time.monotonic() - self._started)
        after, self._after_open = self._after_open, None
        return after or True  # a resumed session goes on at the stage it had reached

    def _resume_route(self, stage: str) -> str:
        """A resumed session goes back to ``stage``; from the rtc stages on, those run
        again first (a new peer connection), then the chain jumps to ``stage``."""
        names = [s.name for s in self.conn.stages]
        if stage not in names or names.index(stage) < self._first:
            return stage
        # Mid-handshake or past it: the peer connection is gone, so start the rtc
        # stages over; past them, go on at ``stage`` once the channels are open.
        self._after_open = stage if names.index(stage) > self._last else None
        return names[self._first]

    # -- plumbing --------------------------------------------------------------------

    def _label(self, label: str | None) -> str:
        return self.specs[0].label if label is None else label

    def _channel_of(self, label: str) -> Channel | None:
        return self.channels.get(label)

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
            return self._crossed(message)
        stage = self.conn.current
        if index < self._first:
            raise SignalingError(f"{type(message).__name__.upper()} before the rtc stages")
        if isinstance(message, Bye):  # the peer closed on purpose: no failure, no hooks
            self._background.spawn(self._shut(*self._detach_peer()))
            return True
        if isinstance(message, Error):
            logger.warning("peer reported error %d: %s", message.code, message.reason)
            return True
        consumed = self._after_stages(message)
        if consumed is None:
            raise SignalingError(f"unexpected {type(message).__name__.upper()} in stage {stage!r}")
        return consumed

    def _remote_sdp(self, sdp: str, kind: SdpKind, own: frozenset[IPAddress] = frozenset()) -> str:
        """Check the peer's SDP and start counting its candidates (a handshake starts);
        return it as the WebRTC stack may see it. ``own``: this host's addresses."""
        request = self.conn.request
        remote = request.remote_ip
        if not remote:
            address = self.conn.remote_address
            remote = str(address[0]) if isinstance(address, (tuple, list)) and address else ""
        self._guard = CandidateGuard(
            self.remote_addresses,
            limit=self.max_remote_candidates,
            peer=peer_address(remote, request.headers),
            own=own,
            dropped=self._dropped,
        )
        return self._guard.sdp(sdp, kind)

    def _dropped(self, candidate: RemoteCandidate, why: str) -> None:
        self.dropped_candidates += 1
        if self.dropped_candidates == 1:  # once per connection; the count tells the rest
            logger.info(
                "connection %s: dropped the remote candidate %s (%s; remote_addresses=%s);"
                " further ones are only counted in session.dropped_candidates",
                self.conn.id,
                candidate,
                why,
                list(self.remote_addresses.rules),
            )

    def _trickled(self, message: Candidate) -> None:
        pc = self.pc
        if pc is None:
            if self._started is None:  # no handshake has begun: out of order
                raise SignalingError(f"CANDIDATE before the {self._REMOTE_SDP}")
            logger.debug("ignoring a CANDIDATE: no peer connection")  # closed on purpose
            return
        guard = self._guard
        if pc.remoteDescription is None or guard is None:
            raise SignalingError(f"CANDIDATE before the {self._REMOTE_SDP}")
        if guard.trickled(message.candidate) is None:
            return  # the end of candidates, an mDNS name, or dropped by remote_addresses
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
            dc,
            spec,
            batch=self.batch,
            max_frame=self.max_frame,
            max_buffered=self.max_buffered,
            meter=self.conn.meter,
            ping_interval=self.ping_interval,
            channel_timeout=self.channel_timeout,
            on_rtt=self._measured,
            background=self._background,
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
                self._lost("the peer connection failed")

    def _channel_closed(self, channel: Channel) -> None:
        if self.channels.get(channel.label) is channel:
            self._lost(channel.close_reason or f"channel {channel.label!r} closed")

    def _measured(self, rtt: float) -> None:
        self.rtt = rtt

    def _lost(self, reason: str) -> None:
        if self._closing_peer or self.conn.closed or self._lost_pc is self.pc:
            return
        self._lost_pc = self.pc  # once per peer connection, however many channels die
        self.close_reason = reason
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
