"""Exception classes and the close-code table.

Every way a connection ends is data: a :class:`CloseCode` and a reason string, and where
it came from an exception, that exception as the cause. ``docs/close-codes.md`` is the
table in prose; keep the two in step.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "CloseCode",
    "ConnectionClosedError",
    "HandshakeRejected",
    "OutOfStagesError",
    "OverMemoryError",
    "QueueFullError",
    "RateExceededError",
    "SignalingError",
    "SockerError",
    "StageTimeoutError",
    "close_outcome",
]


class CloseCode(IntEnum):
    """WebSocket close codes socker sends, and why."""

    NORMAL = 1000
    """The application closed the connection on purpose."""
    GOING_AWAY = 1001
    """The server is shutting down (or the client is leaving)."""
    UNSUPPORTED_DATA = 1003
    """A text frame arrived; aiosocker speaks binary frames only."""
    MESSAGE_TOO_BIG = 1009
    """A message was larger than ``max_size``."""
    INTERNAL_ERROR = 1011
    """A stage handler raised, or the chain ran past its last stage. The reason names
    the stage."""
    BAD_SIGNALING = 4400
    """Malformed or out-of-order signaling, or an SDP the WebRTC stack rejected."""
    STAGE_TIMEOUT = 4408
    """A stage's ``timeout`` expired before its handler advanced. The reason names the
    stage."""
    OVER_MEMORY = 4413
    """The peer made this side hold more than ``max_memory`` bytes for its connection
    (deferred messages, replies it does not read)."""
    OVER_RATE = 4429
    """The peer sent faster than its ``rate`` allows (messages or bytes per second)."""


class SockerError(Exception):
    """Base class of every exception socker raises on purpose."""


class OutOfStagesError(SockerError):
    """A handler asked to advance past the last stage of the chain.

    The machine stays on its last stage. Make the last stage return ``False`` (stay) if
    it is meant to handle every later message.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        super().__init__(
            f"stage {stage!r} returned True but it is the last stage: nothing to advance"
            " to (return False from a final stage to stay on it)"
        )


class StageTimeoutError(SockerError):
    """A stage's timeout expired before its handler advanced the connection."""

    def __init__(self, stage: str, timeout: float) -> None:
        self.stage = stage
        self.timeout = timeout
        super().__init__(f"stage {stage!r} timed out after {timeout:g} s")


class QueueFullError(SockerError):
    """``write()`` found the connection's outgoing queue full.

    The peer reads slower than the application writes. Use ``await send()`` to wait for
    room, raise ``max_queue``, or drop the message (a game often should).
    """


class OverMemoryError(SockerError):
    """A connection went over its ``max_memory`` byte budget because of its peer; it
    closes with :attr:`CloseCode.OVER_MEMORY`."""


class RateExceededError(SockerError):
    """The peer sent faster than the rate of its stage (or connection) allows; the
    connection closes with :attr:`CloseCode.OVER_RATE`."""

    def __init__(self, stage: str, rate: object) -> None:
        self.stage = stage
        self.rate = rate
        super().__init__(f"stage {stage!r}: the peer sent faster than {rate}")


class ConnectionClosedError(SockerError):
    """The connection is closed; ``code`` and ``reason`` tell how it ended."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed (code {code}, reason {reason!r})")


class HandshakeRejected(SockerError):
    """The server refused the WebSocket handshake with an HTTP status."""

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"server refused the connection: HTTP {status} {reason}".rstrip())


class SignalingError(SockerError):
    """A signaling message was malformed, out of order, or carried an SDP that was
    rejected. Connections close with :attr:`CloseCode.BAD_SIGNALING`."""


def close_outcome(
    sent: tuple[int, str] | None,
    received: tuple[int, str] | None,
    received_first: bool,
) -> tuple[int | None, str]:
    """How a connection ended, from the close frames it exchanged: the code and reason
    of whichever side closed first (``None`` if no close frame went either way).

    Every transport reports its end through this, so ``on_close`` hears the same code
    for the same exchange whatever the socket library.
    """
    if sent is not None and (received is None or not received_first):
        return sent
    if received is not None:
        return received
    return None, ""
