"""The signaling envelope: WebRTC signaling messages as binary WebSocket frames.

Sans-I/O: this module imports neither asyncio nor aiortc. :func:`encode` turns a message
into the bytes of one binary WebSocket frame, :func:`decode` turns a frame back into a
message or raises :class:`~aiosocker.SignalingError` naming what is wrong with it.

Signaling frames share the WebSocket with application frames, so each one starts with
:data:`MAGIC`; :func:`is_signaling` tells the two apart. ``docs/protocol.md`` has the
byte layout of every message and the sequence in which the two sides send them.

Rules
-----
* Frame: ``MAGIC`` (``ff 53``), version (``01``), type (:class:`MessageType`), payload.
  Integers are big-endian; text is UTF-8; a trailing text field runs to the end of the
  frame.
* Decoding is strict: unknown versions, types or flag bits, trailing bytes, non-zero
  values in absent fields and oversize text are all errors. So every frame that decodes
  is exactly ``encode(decode(frame))``: there is one encoding per message.
* Messages validate their fields when built and raise :class:`ValueError` (or
  :class:`TypeError`), so :func:`encode` cannot produce a frame the peer would reject.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any, ClassVar, Final, Literal, TypeAlias

from ..errors import SignalingError

__all__ = [
    "MAGIC",
    "MAX_CHANNEL_ID",
    "MAX_SDP_SIZE",
    "MAX_TEXT_SIZE",
    "VERSION",
    "Answer",
    "Bye",
    "Candidate",
    "ChannelSpec",
    "Error",
    "IceServer",
    "IceServers",
    "Message",
    "MessageType",
    "Offer",
    "Open",
    "Ready",
    "Renegotiate",
    "decode",
    "encode",
    "is_signaling",
    "validate_channels",
]

MAGIC: Final = b"\xffS"
"""First two bytes of every signaling frame. ``0xff`` never starts UTF-8 text, CBOR or a
protobuf message, so apps using those never collide; other apps must not start their
own binary messages with ``ff 53``."""

VERSION: Final = 1
"""The envelope version this module speaks (byte 2 of every frame)."""

MAX_SDP_SIZE: Final = 64 * 1024
"""Largest SDP accepted, in bytes of UTF-8. A data-channel-only SDP is ~1-3 KiB."""

MAX_TEXT_SIZE: Final = 4096
"""Largest reason, ICE candidate line or media id accepted, in bytes of UTF-8."""

MAX_CHANNEL_ID: Final = 65534
"""Largest SCTP stream id a data channel may use (65535 is reserved)."""

MAX_ICE_SERVERS: Final = 8
"""Most ICE servers an ICE_SERVERS message carries, and most URLs per server."""

MAX_ICE_FIELD: Final = 1024
"""Largest ICE server URL, user name or credential, in bytes of UTF-8."""

ICE_SCHEMES: Final = ("stun:", "stuns:", "turn:", "turns:")
"""The URL schemes an ICE server may use (RFC 7064, RFC 7065)."""

_U16_MAX: Final = 0xFFFF
_HEADER_SIZE: Final = 4  # magic (2), version (1), type (1)

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
# Fixed part of a channel: flags, max_retransmits, max_packet_lifetime, id, label length.
_CHANNEL = struct.Struct(">BHHHH")
# Fixed part of a CANDIDATE: flags, sdp_mline_index, sdp_mid length.
_CANDIDATE = struct.Struct(">BHH")

# Channel flag bits. Each optional field has a presence bit so that 0 and "absent" differ.
_ORDERED: Final = 0x01
_NEGOTIATED: Final = 0x02  # also says the id field is present: negotiated <=> id given
_HAS_RETRANSMITS: Final = 0x04
_HAS_LIFETIME: Final = 0x08
_CHANNEL_FLAGS: Final = _ORDERED | _NEGOTIATED | _HAS_RETRANSMITS | _HAS_LIFETIME

# Candidate flag bits.
_HAS_MID: Final = 0x01
_HAS_MLINE_INDEX: Final = 0x02
_CANDIDATE_FLAGS: Final = _HAS_MID | _HAS_MLINE_INDEX


class MessageType(IntEnum):
    """The type byte (byte 3) of a signaling frame."""

    READY = 0x01
    """Client -> server: ready for WebRTC; send an offer."""
    OFFER = 0x02
    """Server -> client: SDP offer and the channels it describes."""
    ANSWER = 0x03
    """Client -> server: SDP answer."""
    CANDIDATE = 0x04
    """Either way: one trickled ICE candidate."""
    OPEN = 0x05
    """Either way: all of the offer's channels are open on the sender's side."""
    RENEGOTIATE = 0x06
    """Server -> client: start over; the client sends READY again."""
    ERROR = 0x07
    """Either way: what went wrong, before the sender closes the connection."""
    BYE = 0x08
    """Either way: the sender closes its peer connection on purpose."""
    RESUME = 0x09
    """Server -> client: the token to resume this session with, and whether this
    connection resumed an earlier one (not rtc: the same envelope, see
    docs/protocol.md)."""
    ICE_SERVERS = 0x0A
    """Server -> client, right before an OFFER: ICE servers (e.g. TURN with short-lived
    credentials) for the peer connection that OFFER makes."""


_HEADERS: Final = {kind: MAGIC + bytes((VERSION, kind)) for kind in MessageType}


# -- validation helpers (ValueError / TypeError: the local caller's bug) ------------------


def _utf8(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        data = value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} cannot be encoded as UTF-8: {exc.reason} at index {exc.start}"
        ) from None
    if len(data) > limit:
        raise ValueError(f"{what} is {len(data)} bytes of UTF-8; the limit is {limit}")
    return data


def _uint(value: object, what: str, maximum: int) -> int:
    # bool is an int subclass; True as a retransmit count is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    if value > maximum:
        raise ValueError(f"{what} must be at most {maximum}, got {value}")
    return value


def _sdp(value: object, kind: str) -> bytes:
    data = _utf8(value, f"{kind} SDP", MAX_SDP_SIZE)
    if not data:
        raise ValueError(f"{kind} SDP must not be empty")
    return data


# -- channels ---------------------------------------------------------------------------


class _Unset(Enum):
    # The default of ChannelSpec.max_retransmits: 0, or None when a lifetime is given.
    UNSET = "unset"

    def __repr__(self) -> str:
        return "0 (None with max_packet_lifetime)"


_UNSET: Final = _Unset.UNSET


@dataclass(frozen=True, slots=True, init=False)
class ChannelSpec:
    """One data channel the server opens, as the OFFER describes it to the client.

    The defaults make a UDP-like channel: unordered, never retransmitted. Fields mirror
    the options of WebRTC's ``createDataChannel()``; :meth:`options` gives them in that
    spelling.

    >>> ChannelSpec("state").options()
    {'ordered': False, 'protocol': '', 'negotiated': False, 'maxRetransmits': 0}
    >>> ChannelSpec("chat", ordered=True, max_retransmits=None).reliable
    True
    """

    label: str
    """Names the channel; unique among a connection's channels; 1..65535 bytes of UTF-8."""
    ordered: bool
    """Whether messages arrive in the order they were sent."""
    max_retransmits: int | None
    """Retransmissions before a message is dropped (0..65535); ``None``: no limit."""
    max_packet_lifetime: int | None
    """Milliseconds a message is retransmitted before it is dropped (0..65535);
    ``None``: no limit. Exclusive with :attr:`max_retransmits`."""
    protocol: str
    """Subprotocol name, free for the application; up to 65535 bytes of UTF-8."""
    negotiated: bool
    """Whether both sides create the channel themselves with the agreed :attr:`id`,
    instead of the server announcing it in-band."""
    id: int | None
    """SCTP stream id (0..65534); given exactly when :attr:`negotiated` is true."""

    def __init__(
        self,
        label: str,
        *,
        ordered: bool = False,
        max_retransmits: int | Literal[_Unset.UNSET] | None = _UNSET,
        max_packet_lifetime: int | None = None,
        protocol: str = "",
        negotiated: bool = False,
        id: int | None = None,
    ) -> None:
        """Validate and build; ``max_retransmits`` defaults to 0, or to ``None`` when
        ``max_packet_lifetime`` is given (WebRTC allows only one of the two)."""
        if max_retransmits is _UNSET:
            max_retransmits = 0 if max_packet_lifetime is None else None
        label_size = len(_utf8(label, "label", _U16_MAX))
        if not label_size:
            raise ValueError("label must not be empty: handlers are attached by label")
        _utf8(protocol, f"protocol of channel {label!r}", _U16_MAX)
        for flag, value in (("ordered", ordered), ("negotiated", negotiated)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
        if max_retransmits is not None:
            _uint(max_retransmits, "max_retransmits", _U16_MAX)
        if max_packet_lifetime is not None:
            _uint(max_packet_lifetime, "max_packet_lifetime", _U16_MAX)
            if max_retransmits is not None:
                raise ValueError(
                    f"channel {label!r} sets both max_retransmits ({max_retransmits}) and"
                    f" max_packet_lifetime ({max_packet_lifetime}); WebRTC allows one:"
                    " pass max_retransmits=None to limit by lifetime"
                )
        if negotiated:
            if id is None:
                raise ValueError(
                    f"channel {label!r} is negotiated but has no id: both sides must"
                    " create it with the same id (0..65534)"
                )
            _uint(id, "id", MAX_CHANNEL_ID)
        elif id is not None:
            raise ValueError(
                f"channel {label!r} has id={id} but negotiated=False: an id is only used"
                " for negotiated channels (the WebRTC stack picks in-band ids)"
            )
        setattr_ = object.__setattr__  # the dataclass is frozen
        setattr_(self, "label", label)
        setattr_(self, "ordered", ordered)
        setattr_(self, "max_retransmits", max_retransmits)
        setattr_(self, "max_packet_lifetime", max_packet_lifetime)
        setattr_(self, "protocol", protocol)
        setattr_(self, "negotiated", negotiated)
        setattr_(self, "id", id)

    @property
    def reliable(self) -> bool:
        """Whether lost messages are retransmitted until delivered."""
        return self.max_retransmits is None and self.max_packet_lifetime is None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``createDataChannel(label, **options)`` (aiortc's and the
        browser's names); absent limits and ids are left out."""
        options: dict[str, Any] = {
            "ordered": self.ordered,
            "protocol": self.protocol,
            "negotiated": self.negotiated,
        }
        if self.max_retransmits is not None:
            options["maxRetransmits"] = self.max_retransmits
        if self.max_packet_lifetime is not None:
            options["maxPacketLifeTime"] = self.max_packet_lifetime
        if self.id is not None:
            options["id"] = self.id
        return options


def validate_channels(specs: Iterable[ChannelSpec]) -> tuple[ChannelSpec, ...]:
    """Check a connection's channels as a set and return them as a tuple.

    Raises :class:`ValueError` for a repeated label or negotiated id, or more than 65535
    channels; :class:`TypeError` for anything that is not a :class:`ChannelSpec`.
    """
    specs = tuple(specs)
    if len(specs) > _U16_MAX:
        raise ValueError(f"{len(specs)} channels; at most {_U16_MAX} fit in an offer")
    labels: dict[str, int] = {}
    ids: dict[int, str] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, ChannelSpec):
            raise TypeError(f"channel {index} must be a ChannelSpec, got {type(spec).__name__}")
        if spec.label in labels:
            raise ValueError(
                f"duplicate channel label {spec.label!r} (channels {labels[spec.label]}"
                f" and {index}): labels must be unique"
            )
        labels[spec.label] = index
        if spec.id is not None:
            if spec.id in ids:
                raise ValueError(
                    f"channels {ids[spec.id]!r} and {spec.label!r} both use id {spec.id}"
                )
            ids[spec.id] = spec.label
    return specs


# -- ICE servers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server for ICE (``urls`` like ``"turn:turn.example.com:3478"``),
    as WebRTC's ``RTCIceServer`` describes one."""

    urls: str | Sequence[str]
    """One URL or several for the same server."""
    username: str | None = None
    """TURN user name."""
    credential: str | None = None
    """TURN password."""

    @property
    def url_list(self) -> tuple[str, ...]:
        """:attr:`urls` as a tuple."""
        return (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)


def _ice_server(server: object, index: int) -> IceServer:
    """``server`` checked for the wire, with its URLs as a tuple and empty fields None."""
    what = f"ICE server {index + 1}"
    if not isinstance(server, IceServer):
        raise TypeError(f"{what} must be an IceServer, got {type(server).__name__}")
    urls = server.url_list
    if not 1 <= len(urls) <= MAX_ICE_SERVERS:
        raise ValueError(f"{what} has {len(urls)} URLs; 1 to {MAX_ICE_SERVERS} fit")
    for url in urls:
        if not _utf8(url, f"{what} URL", MAX_ICE_FIELD) or not url.startswith(ICE_SCHEMES):
            raise ValueError(f"{what} URL {url!r} is not a stun:, stuns:, turn: or turns: URL")
    fields = []
    for name, value in (("username", server.username), ("credential", server.credential)):
        if value is not None:
            _utf8(value, f"{what} {name}", MAX_ICE_FIELD)
        fields.append(value or None)  # "" is absent: one encoding per message
    return IceServer(urls, *fields)


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """READY, client -> server: the client is ready for WebRTC; the server offers.

    No payload (reserved for future versions)."""

    TYPE: ClassVar[MessageType] = MessageType.READY


@dataclass(frozen=True, slots=True)
class Offer:
    """OFFER, server -> client: the SDP offer and the channels it opens."""

    TYPE: ClassVar[MessageType] = MessageType.OFFER

    sdp: str
    """The offer's SDP (1..:data:`MAX_SDP_SIZE` bytes of UTF-8)."""
    channels: tuple[ChannelSpec, ...] = ()
    """The channels the server creates, so the client can attach handlers by label and
    create negotiated ones itself. Checked with :func:`validate_channels`."""

    def __post_init__(self) -> None:
        _sdp(self.sdp, "OFFER")
        # A list is accepted and stored as a tuple, so the message stays hashable.
        object.__setattr__(self, "channels", validate_channels(self.channels))


@dataclass(frozen=True, slots=True)
class Answer:
    """ANSWER, client -> server: the SDP answer to the last OFFER."""

    TYPE: ClassVar[MessageType] = MessageType.ANSWER

    sdp: str
    """The answer's SDP (1..:data:`MAX_SDP_SIZE` bytes of UTF-8)."""

    def __post_init__(self) -> None:
        _sdp(self.sdp, "ANSWER")


@dataclass(frozen=True, slots=True)
class Candidate:
    """CANDIDATE, either way: one trickled ICE candidate (optional; aiortc never sends
    it, its SDP carries every candidate)."""

    TYPE: ClassVar[MessageType] = MessageType.CANDIDATE

    candidate: str
    """The candidate line (``"candidate:..."``); ``""`` means end of candidates."""
    sdp_mid: str | None = None
    """The media id the candidate belongs to, if known."""
    sdp_mline_index: int | None = None
    """The index of the media section it belongs to (0..65535), if known."""

    def __post_init__(self) -> None:
        _utf8(self.candidate, "CANDIDATE candidate", MAX_TEXT_SIZE)
        if self.sdp_mid is not None:
            _utf8(self.sdp_mid, "CANDIDATE sdp_mid", MAX_TEXT_SIZE)
        if self.sdp_mline_index is not None:
            _uint(self.sdp_mline_index, "CANDIDATE sdp_mline_index", _U16_MAX)


@dataclass(frozen=True, slots=True)
class Open:
    """OPEN, either way: every channel of the offer is open on the sender's side.

    The client sends it first (a channel's creator, the server, sees it open only after
    the client's acknowledgement); the server replies with its own. No payload."""

    TYPE: ClassVar[MessageType] = MessageType.OPEN


@dataclass(frozen=True, slots=True)
class Renegotiate:
    """RENEGOTIATE, server -> client: the WebRTC connection must start over (a channel
    or the transport died). The client closes its peer connection and sends READY again;
    a client that wants to start over just sends READY."""

    TYPE: ClassVar[MessageType] = MessageType.RENEGOTIATE

    reason: str = ""
    """Why, for logs (up to :data:`MAX_TEXT_SIZE` bytes of UTF-8)."""

    def __post_init__(self) -> None:
        _utf8(self.reason, "RENEGOTIATE reason", MAX_TEXT_SIZE)


@dataclass(frozen=True, slots=True)
class Error:
    """ERROR, either way: a message (not an exception) saying what went wrong, sent
    before the sender closes; it carries more text than a close frame's 123 bytes."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR

    code: int
    """A close code, usually :attr:`~aiosocker.CloseCode.BAD_SIGNALING` (0..65535)."""
    reason: str = ""
    """What went wrong (up to :data:`MAX_TEXT_SIZE` bytes of UTF-8)."""

    def __post_init__(self) -> None:
        _uint(self.code, "ERROR code", _U16_MAX)
        _utf8(self.reason, "ERROR reason", MAX_TEXT_SIZE)


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE, either way: the sender closes its peer connection on purpose and wants no
    renegotiation. The WebSocket stays open."""

    TYPE: ClassVar[MessageType] = MessageType.BYE

    reason: str = ""
    """Why, for logs (up to :data:`MAX_TEXT_SIZE` bytes of UTF-8)."""

    def __post_init__(self) -> None:
        _utf8(self.reason, "BYE reason", MAX_TEXT_SIZE)


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class Resume:
    """RESUME, server -> client, before anything else on a connection of a server with
    ``resume=``: reconnect with ``?resume=TOKEN`` within the grace period to come back
    as this session. ``resumed`` says whether this connection resumed an earlier one;
    ``fresh_reason`` why not, when a token was given but could not be used."""

    TYPE: ClassVar[MessageType] = MessageType.RESUME

    token: str
    """The token for the next reconnect (URL-safe, at most 256 bytes; single use)."""
    resumed: bool = False
    """Whether this connection took over an earlier session."""
    fresh_reason: str = ""
    """Why a token given on connect did not resume (unknown, used, expired, or too many
    missed messages)."""

    def __post_init__(self) -> None:
        if not isinstance(self.resumed, bool):
            raise TypeError(f"RESUME resumed must be a bool, got {self.resumed!r}")
        _utf8(self.token, "RESUME token", 256)
        if not self.token or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.token
        ):
            raise ValueError(f"RESUME token must be 1-256 URL-safe characters, got {self.token!r}")
        _utf8(self.fresh_reason, "RESUME reason", MAX_TEXT_SIZE)


@dataclass(frozen=True, slots=True)
class IceServers:
    """ICE_SERVERS, server -> client, right before an OFFER: ICE servers for the peer
    connection the client makes for that OFFER, in addition to its own. A server with
    ``turn=`` sends TURN credentials it minted for this player, valid for a while, so no
    long-lived TURN password reaches a client. Sent only by such servers (see
    docs/protocol.md, Versioning)."""

    TYPE: ClassVar[MessageType] = MessageType.ICE_SERVERS

    servers: tuple[IceServer, ...]
    """1..:data:`MAX_ICE_SERVERS` servers, each with 1..:data:`MAX_ICE_SERVERS` URLs;
    URLs, user names and credentials of at most :data:`MAX_ICE_FIELD` bytes (an empty
    user name or credential is stored as ``None``)."""

    def __post_init__(self) -> None:
        servers = tuple(self.servers)
        if not 1 <= len(servers) <= MAX_ICE_SERVERS:
            raise ValueError(
                f"ICE_SERVERS carries 1 to {MAX_ICE_SERVERS} servers, not {len(servers)}"
            )
        object.__setattr__(self, "servers", tuple(_ice_server(s, i) for i, s in enumerate(servers)))


Message: TypeAlias = (
    Ready | Offer | Answer | Candidate | Open | Renegotiate | Error | Bye | Resume | IceServers
)
"""Any signaling message."""


# -- encoding ---------------------------------------------------------------------------


def is_signaling(frame: bytes | bytearray | memoryview) -> bool:
    """Whether a binary frame is signaling (starts with :data:`MAGIC`) rather than an
    application message. Says nothing about whether it is well formed."""
    return frame[:2] == MAGIC


def _encode_channel(spec: ChannelSpec) -> bytes:
    label = spec.label.encode()
    protocol = spec.protocol.encode()
    flags = _ORDERED if spec.ordered else 0
    if spec.negotiated:
        flags |= _NEGOTIATED
    if spec.max_retransmits is not None:
        flags |= _HAS_RETRANSMITS
    if spec.max_packet_lifetime is not None:
        flags |= _HAS_LIFETIME
    fixed = _CHANNEL.pack(
        flags,
        spec.max_retransmits or 0,
        spec.max_packet_lifetime or 0,
        spec.id or 0,
        len(label),
    )
    return b"".join((fixed, label, _U16.pack(len(protocol)), protocol))


def _field(text: str | None) -> bytes:
    data = (text or "").encode()
    return _U16.pack(len(data)) + data


def _encode_ice_server(server: IceServer) -> bytes:
    urls = server.url_list
    parts = [bytes((len(urls),)), *map(_field, urls), _field(server.username)]
    parts.append(_field(server.credential))
    return b"".join(parts)


def encode(message: Message) -> bytes:
    """The binary WebSocket frame carrying ``message``."""
    match message:
        case Ready() | Open():
            payload = b""
        case Offer(sdp=sdp, channels=channels):
            parts = [_U16.pack(len(channels))]
            parts.extend(_encode_channel(spec) for spec in channels)
            parts.append(sdp.encode())
            payload = b"".join(parts)
        case Answer(sdp=sdp):
            payload = sdp.encode()
        case Candidate(candidate=candidate, sdp_mid=mid, sdp_mline_index=index):
            flags = (0 if mid is None else _HAS_MID) | (0 if index is None else _HAS_MLINE_INDEX)
            mid_bytes = b"" if mid is None else mid.encode()
            fixed = _CANDIDATE.pack(flags, index or 0, len(mid_bytes))
            payload = b"".join((fixed, mid_bytes, candidate.encode()))
        case Renegotiate(reason=reason) | Bye(reason=reason):
            payload = reason.encode()
        case Error(code=code, reason=reason):
            payload = _U16.pack(code) + reason.encode()
        case Resume(token=token, resumed=resumed, fresh_reason=why):
            encoded = token.encode()
            payload = bytes((int(resumed),)) + _U16.pack(len(encoded)) + encoded + why.encode()
        case IceServers(servers=servers):
            payload = bytes((len(servers),)) + b"".join(map(_encode_ice_server, servers))
        case _:
            raise TypeError(f"not a signaling message: {message!r}")
    return _HEADERS[message.TYPE] + payload


# -- decoding (SignalingError: the peer's bug) ------------------------------------------


class _Reader:
    """A cursor over one frame's payload that names the field when it runs short."""

    __slots__ = ("data", "kind", "pos")

    def __init__(self, data: bytes, kind: MessageType) -> None:
        self.data = data
        self.kind = kind.name
        self.pos = _HEADER_SIZE

    def fail(self, problem: str) -> SignalingError:
        return SignalingError(f"bad {self.kind}: {problem}")

    def take(self, size: int, field: str) -> bytes:
        start = self.pos
        end = start + size
        if end > len(self.data):
            raise self.fail(
                f"truncated: {field} needs {size} bytes at offset {start},"
                f" {len(self.data) - start} left"
            )
        self.pos = end
        return self.data[start:end]

    def unpack(self, layout: struct.Struct, field: str) -> tuple[int, ...]:
        values: tuple[int, ...] = layout.unpack(self.take(layout.size, field))
        return values

    def text(self, data: bytes, field: str, limit: int) -> str:
        # Size first: never decode a megabyte only to reject it.
        if len(data) > limit:
            raise self.fail(f"{field} is {len(data)} bytes; the limit is {limit}")
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"{field} is not valid UTF-8: {exc.reason} at byte {exc.start}"
            ) from None

    def rest(self, field: str, limit: int) -> str:
        data = self.data[self.pos :]
        self.pos = len(self.data)
        return self.text(data, field, limit)

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise self.fail(f"{extra} unexpected bytes after the payload at offset {self.pos}")


def _decode_channel(reader: _Reader, field: str) -> ChannelSpec:
    flags, retransmits, lifetime, id_, label_size = reader.unpack(_CHANNEL, field)
    if flags & ~_CHANNEL_FLAGS:
        raise reader.fail(f"{field} sets unknown flag bits {flags & ~_CHANNEL_FLAGS:#04x}")
    # Absent fields must be zero: one encoding per message.
    for bit, value, name in (
        (_HAS_RETRANSMITS, retransmits, "max_retransmits"),
        (_HAS_LIFETIME, lifetime, "max_packet_lifetime"),
        (_NEGOTIATED, id_, "id"),
    ):
        if value and not flags & bit:
            raise reader.fail(f"{field} has {name}={value} but not its flag: absent must be 0")
    label = reader.text(reader.take(label_size, f"{field} label"), f"{field} label", _U16_MAX)
    (protocol_size,) = reader.unpack(_U16, f"{field} protocol length")
    protocol = reader.text(
        reader.take(protocol_size, f"{field} protocol"), f"{field} protocol", _U16_MAX
    )
    try:
        return ChannelSpec(
            label,
            ordered=bool(flags & _ORDERED),
            max_retransmits=retransmits if flags & _HAS_RETRANSMITS else None,
            max_packet_lifetime=lifetime if flags & _HAS_LIFETIME else None,
            protocol=protocol,
            negotiated=bool(flags & _NEGOTIATED),
            id=id_ if flags & _NEGOTIATED else None,
        )
    except ValueError as exc:
        raise reader.fail(f"{field}: {exc}") from None


def _decode_offer(reader: _Reader) -> Offer:
    (count,) = reader.unpack(_U16, "channel count")
    channels = [_decode_channel(reader, f"channel {i + 1} of {count}") for i in range(count)]
    sdp = reader.rest("SDP", MAX_SDP_SIZE)
    if not sdp:
        raise reader.fail("SDP is empty")
    try:
        return Offer(sdp, tuple(channels))
    except ValueError as exc:  # duplicate labels or ids
        raise reader.fail(str(exc)) from None


def _decode_answer(reader: _Reader) -> Answer:
    sdp = reader.rest("SDP", MAX_SDP_SIZE)
    if not sdp:
        raise reader.fail("SDP is empty")
    return Answer(sdp)


def _decode_candidate(reader: _Reader) -> Candidate:
    flags, index, mid_size = reader.unpack(_CANDIDATE, "header")
    if flags & ~_CANDIDATE_FLAGS:
        raise reader.fail(f"unknown flag bits {flags & ~_CANDIDATE_FLAGS:#04x}")
    if index and not flags & _HAS_MLINE_INDEX:
        raise reader.fail(f"sdp_mline_index={index} but not its flag: absent must be 0")
    if mid_size and not flags & _HAS_MID:
        raise reader.fail(f"sdp_mid of {mid_size} bytes but not its flag: absent must be 0")
    mid = reader.text(reader.take(mid_size, "sdp_mid"), "sdp_mid", MAX_TEXT_SIZE)
    candidate = reader.rest("candidate", MAX_TEXT_SIZE)
    return Candidate(
        candidate,
        mid if flags & _HAS_MID else None,
        index if flags & _HAS_MLINE_INDEX else None,
    )


def _decode_ready(reader: _Reader) -> Ready:
    reader.end()
    return Ready()


def _decode_open(reader: _Reader) -> Open:
    reader.end()
    return Open()


def _decode_renegotiate(reader: _Reader) -> Renegotiate:
    return Renegotiate(reader.rest("reason", MAX_TEXT_SIZE))


def _decode_error(reader: _Reader) -> Error:
    (code,) = reader.unpack(_U16, "code")
    return Error(code, reader.rest("reason", MAX_TEXT_SIZE))


def _decode_bye(reader: _Reader) -> Bye:
    return Bye(reader.rest("reason", MAX_TEXT_SIZE))


def _decode_resume(reader: _Reader) -> Resume:
    (flags,) = reader.unpack(_U8, "flags")
    if flags > 1:
        raise reader.fail(f"flags sets unknown bits {flags & ~1:#04x}")
    (size,) = reader.unpack(_U16, "token size")
    token = reader.text(reader.take(size, "token"), "token", 256)
    why = reader.rest("reason", MAX_TEXT_SIZE)
    try:
        return Resume(token, bool(flags), why)
    except ValueError as exc:
        raise reader.fail(str(exc)) from None


def _decode_ice_servers(reader: _Reader) -> IceServers:
    (count,) = reader.unpack(_U8, "server count")
    if not 1 <= count <= MAX_ICE_SERVERS:
        raise reader.fail(f"server count {count}; 1 to {MAX_ICE_SERVERS} fit")
    servers = []
    for i in range(count):
        field = f"server {i + 1} of {count}"
        (urls,) = reader.unpack(_U8, f"{field} URL count")
        if not 1 <= urls <= MAX_ICE_SERVERS:
            raise reader.fail(f"{field} has {urls} URLs; 1 to {MAX_ICE_SERVERS} fit")
        texts = []
        for name in [f"URL {u + 1}" for u in range(urls)] + ["username", "credential"]:
            (size,) = reader.unpack(_U16, f"{field} {name} length")
            what = f"{field} {name}"
            texts.append(reader.text(reader.take(size, what), what, MAX_ICE_FIELD))
        *url_texts, username, credential = texts
        servers.append(IceServer(tuple(url_texts), username or None, credential or None))
    reader.end()
    try:
        return IceServers(tuple(servers))
    except ValueError as exc:  # an empty URL, or another scheme
        raise reader.fail(str(exc)) from None


_DECODERS: Final[dict[MessageType, Callable[[_Reader], Message]]] = {
    MessageType.READY: _decode_ready,
    MessageType.OFFER: _decode_offer,
    MessageType.ANSWER: _decode_answer,
    MessageType.CANDIDATE: _decode_candidate,
    MessageType.OPEN: _decode_open,
    MessageType.RENEGOTIATE: _decode_renegotiate,
    MessageType.ERROR: _decode_error,
    MessageType.BYE: _decode_bye,
    MessageType.RESUME: _decode_resume,
    MessageType.ICE_SERVERS: _decode_ice_servers,
}


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """The message in a signaling frame.

    Raises :class:`~aiosocker.SignalingError` naming the problem: not a signaling frame,
    truncated, unsupported version, unknown type, bad UTF-8, oversize text, invalid
    channel, or bytes left over.
    """
    if isinstance(frame, (bytearray, memoryview)):
        frame = bytes(frame)
    elif not isinstance(frame, bytes):
        raise SignalingError(
            f"a signaling frame is bytes, got {type(frame).__name__} (a text frame?)"
        )
    if not MAGIC.startswith(frame[:2]):
        raise SignalingError(
            f"not a signaling frame: it starts with {frame[:2].hex(' ')}, not the magic"
            f" {MAGIC.hex(' ')}"
        )
    if len(frame) < _HEADER_SIZE:
        raise SignalingError(
            f"truncated signaling frame: {len(frame)} bytes, shorter than the 4-byte"
            " header (magic, version, type)"
        )
    if frame[2] != VERSION:
        raise SignalingError(
            f"unsupported signaling version {frame[2]}; this peer speaks version {VERSION}"
        )
    try:
        kind = MessageType(frame[3])
    except ValueError:
        raise SignalingError(
            f"unknown signaling message type {frame[3]:#04x}; version {VERSION} has"
            f" {min(MessageType):#04x}..{max(MessageType):#04x}"
        ) from None
    return _DECODERS[kind](_Reader(frame, kind))
