"""What the picows listener must do beyond picows, sans-I/O: reassemble fragmented
messages under ``max_size``, and keep the books of the closing handshake.

picows hands over frames; these classes say what they mean (a message, nothing yet, or
a protocol violation with its close code) and what the close handshake has come to.
No socket, no event loop: ``tests/unit/test_picows_framing.py`` drives them by hand.
"""

from __future__ import annotations

from ...errors import CloseCode, close_outcome

__all__ = [
    "MAX_FRAGMENTS",
    "CloseBook",
    "Reassembler",
    "Violation",
    "check_close_code",
    "check_reserved_bits",
]

PROTOCOL_ERROR = 1002
NO_STATUS = 1005  # what a close frame without a code is reported as (RFC 6455 7.1.5)
PING_TIMEOUT = "peer has not replied to ping"  # the reason picows' keepalive sends
MAX_FRAGMENTS = 4096
"""Frames one message may come in; more closes with 1009, as ``websockets`` does."""


def check_close_code(code: int) -> None:
    """Raise :class:`Violation` (1002) for a close code a peer may not send
    (RFC 6455 7.4: 1004-1006, 1015, reserved ranges, 5000 and up)."""
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise Violation(PROTOCOL_ERROR, "invalid status code")


def check_reserved_bits(rsv1: bool, rsv2: bool, rsv3: bool) -> None:
    """Raise :class:`Violation` (1002) if a frame sets a reserved bit: no extension is
    negotiated (compression is off)."""
    if rsv1 or rsv2 or rsv3:
        raise Violation(PROTOCOL_ERROR, "reserved bits must be 0")


class Violation(Exception):
    """The peer broke the protocol: close with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} ({code})")
        self.code = code
        self.reason = reason


INVALID_DATA = 1007


def _text(payload: bytes | bytearray) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError as exc:  # worded as websockets words it
        raise Violation(INVALID_DATA, f"{exc.reason} at position {exc.start}") from None


class Reassembler:
    """Turns data frames into whole messages; ``max_size`` bounds the whole message.

    Call :meth:`start` for a BINARY or TEXT frame and :meth:`more` for a CONTINUATION;
    each returns the message once it is complete (``bytes``, or ``str`` for text), or
    ``None`` while fragments are pending, and raises :class:`Violation` for frames out
    of order (1002), a message over ``max_size`` or :data:`MAX_FRAGMENTS` (1009), or
    text that is not UTF-8 (1007).
    """

    __slots__ = ("_count", "_parts", "_text", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._parts: bytearray | None = None
        self._text = False
        self._count = 0

    @property
    def pending(self) -> bool:
        """Whether a fragmented message has started and not finished."""
        return self._parts is not None

    def start(self, payload: bytes, *, text: bool, fin: bool) -> bytes | str | None:
        """A BINARY (or TEXT) frame: a whole message if ``fin``, else its first part."""
        if self._parts is not None:
            raise Violation(PROTOCOL_ERROR, "expected a continuation frame")
        if fin:
            return _text(payload) if text else payload
        self._parts = bytearray(payload)
        self._text = text
        self._count = 1
        return None

    def more(self, payload: bytes | memoryview, *, fin: bool) -> bytes | str | None:
        """A CONTINUATION frame: the whole message once ``fin``."""
        parts = self._parts
        if parts is None:
            raise Violation(PROTOCOL_ERROR, "continuation frame without a start")
        if len(parts) + len(payload) > self.max_size:
            self._parts = None
            raise Violation(
                CloseCode.MESSAGE_TOO_BIG, f"message over max_size ({self.max_size} bytes)"
            )
        self._count += 1
        if self._count > MAX_FRAGMENTS:
            self._parts = None
            raise Violation(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
        parts += payload
        if not fin:
            return None
        self._parts = None
        return _text(parts) if self._text else bytes(parts)


class CloseBook:
    """The closing handshake of one connection: who sent what, in which order.

    :meth:`send` says whether our close frame may go out (once); :meth:`received`
    records the peer's and says what to echo (RFC 6455 5.5.1); :meth:`outcome` is how
    the connection ended, as every transport reports it (``close_outcome``).
    """

    __slots__ = ("_received", "_received_first", "_sent")

    def __init__(self) -> None:
        self._sent: tuple[int, str] | None = None
        self._received: tuple[int, str] | None = None
        self._received_first = False

    @property
    def sent(self) -> bool:
        """Whether our close frame went out."""
        return self._sent is not None

    @property
    def received(self) -> bool:
        """Whether the peer's close frame came in."""
        return self._received is not None

    def send(self, code: int, reason: str) -> bool:
        """Record our close frame; ``False`` if one already went out (send nothing)."""
        if self._sent is not None:
            return False
        self._sent = (int(code), reason)
        return True

    def library_sent(self, code: int, reason: str) -> None:
        """Record a close frame the socket library sent on its own (picows does for a
        frame over its size limit, or a keepalive ping left unanswered)."""
        self.send(code, reason)

    def receive(self, code: int | None, reason: str) -> tuple[int, str] | None:
        """Record the peer's close frame (``code`` ``None``: it had no payload). Returns
        the frame to echo, or ``None`` if ours went out already."""
        if self._received is None:
            self._received = (NO_STATUS if code is None else int(code), reason)
            self._received_first = self._sent is None
        if self._sent is not None:
            return None
        echo = self._received
        self._sent = echo
        return echo

    def outcome(self) -> tuple[int | None, str]:
        """The code and reason of whichever side closed first (``None``: neither)."""
        code, reason = close_outcome(self._sent, self._received, self._received_first)
        ours = self._sent is not None and not self._received_first  # not an echo
        if ours and code == CloseCode.GOING_AWAY and reason.startswith(PING_TIMEOUT):
            # picows' keepalive gave up (and sent 1001): report it as websockets does.
            return CloseCode.INTERNAL_ERROR, "keepalive ping timeout"
        return code, reason
