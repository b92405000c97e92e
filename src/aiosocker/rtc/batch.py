"""Batching: many small DataChannel messages in few SCTP messages.

aiortc sends one SCTP packet per ``send()`` and tops out near 2,000 small messages a
second; the kernel starts dropping UDP past ~3,000 (``webrtc-field-notes.md``, note 10).
Packing the messages of one loop tick into a few frames keeps the packet rate low.

Sans-I/O: no asyncio, no aiortc. :func:`pack` and :func:`unpack` are the codec;
:class:`Batcher` collects messages between flushes.

Frame format (``docs/protocol.md``)
-----------------------------------
* ``b0`` + message: one message, as is (no length: it runs to the end of the frame).
* ``b1`` + (length, message) repeated: one or more messages, in order. The length is an
  unsigned LEB128 varint: 1 byte below 128, 2 below 16,384, at most 4; minimal form.

:func:`pack` uses ``b0`` for a frame holding one message and ``b1`` otherwise; it keeps
every frame within ``max_size`` except the ``b0`` frame of a message that alone does not
fit (that frame is the message plus one byte).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ..errors import SockerError

__all__ = [
    "BATCH",
    "DEFAULT_MAX_SIZE",
    "MAX_MAX_SIZE",
    "SINGLE",
    "BatchError",
    "Batcher",
    "pack",
    "unpack",
]

SINGLE: Final = 0xB0
"""Marker byte of a frame holding exactly one message, without a length."""

BATCH: Final = 0xB1
"""Marker byte of a frame holding length-prefixed messages."""

DEFAULT_MAX_SIZE: Final = 16 * 1024
"""Default frame size limit: 16 KiB, the SCTP message size every browser accepts."""

MAX_MAX_SIZE: Final = 1 << 28
"""Largest ``max_size``: batched lengths then fit the 4-byte varints receivers accept."""

_SINGLE_MARK: Final = bytes((SINGLE,))
_BATCH_MARK: Final = bytes((BATCH,))
_MAX_VARINT: Final = 4
# Length prefixes of messages shorter than 128 bytes, the common case, made once.
_SMALL: Final = tuple(bytes((n,)) for n in range(0x80))


class BatchError(SockerError):
    """A received DataChannel frame is not a valid batch frame."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _check_max_size(max_size: int) -> None:
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise TypeError(f"max_size must be an int, got {type(max_size).__name__}")
    if not 1 <= max_size <= MAX_MAX_SIZE:
        raise ValueError(f"max_size must be in 1..{MAX_MAX_SIZE} bytes, got {max_size}")


def _frame(group: list[bytes]) -> bytes:
    # group is [b1 marker, prefix, message, prefix, message, ...].
    if len(group) == 3:
        return _SINGLE_MARK + group[2]  # one message needs no length
    return b"".join(group)


def pack(messages: Iterable[bytes], max_size: int = DEFAULT_MAX_SIZE) -> list[bytes]:
    """Pack ``messages`` in order into as few frames of at most ``max_size`` bytes as
    order allows.

    A message too big to share a frame goes alone in a ``b0`` frame, which may exceed
    ``max_size`` by one byte. No messages give no frames.
    """
    _check_max_size(max_size)
    frames: list[bytes] = []
    group = [_BATCH_MARK]
    size = 1  # of group as a b1 frame
    small = _SMALL
    for message in messages:
        n = len(message)
        if n < 0x80:
            prefix = small[n]
        elif n < 0x4000:
            prefix = bytes((n & 0x7F | 0x80, n >> 7))
        else:
            prefix = _varint(n)
        cost = len(prefix) + n
        # Greedy in order is optimal here: a frame's size only grows with what it holds.
        if size + cost > max_size and size > 1:
            frames.append(_frame(group))
            group = [_BATCH_MARK]
            size = 1
        group.append(prefix)
        group.append(message)
        size += cost
    if size > 1:
        frames.append(_frame(group))
    return frames


def _read_varint(frame: bytes, start: int) -> tuple[int, int]:
    # The slow path of unpack(), for lengths of 128 bytes and more.
    value = 0
    shift = 0
    stop = min(start + _MAX_VARINT, len(frame))
    for pos in range(start, stop):
        byte = frame[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0:
                raise BatchError(f"non-minimal length at offset {start}: a trailing 00 byte")
            return value, pos + 1
        shift += 7
    if stop < start + _MAX_VARINT:
        raise BatchError(f"truncated length at offset {start}: the frame ends inside it")
    raise BatchError(f"length at offset {start} is longer than {_MAX_VARINT} bytes")


def _bad_marker(frame: bytes | str) -> BatchError:
    # Off the hot path: unpack() only calls this once the first byte did not match.
    if isinstance(frame, str):
        return BatchError("got a text message; batch frames are binary")
    if not frame:
        return BatchError("empty frame: a batch frame starts with a marker byte (b0 or b1)")
    return BatchError(f"unknown batch marker {frame[0]:#04x}; expected 0xb0 or 0xb1")


def unpack(frame: bytes) -> list[bytes]:
    """The messages in one frame made by :func:`pack` (or a peer's equivalent).

    Raises :class:`BatchError` naming the problem: unknown marker, truncated or
    over-long length, a message running past the end, or an empty ``b1`` frame.
    """
    if not frame:
        raise _bad_marker(frame)
    marker = frame[0]
    if marker == SINGLE:
        return [frame[1:]]
    if marker != BATCH:
        raise _bad_marker(frame)
    messages: list[bytes] = []
    append = messages.append
    total = len(frame)
    pos = 1
    while pos < total:
        size = frame[pos]
        if size < 0x80:
            pos += 1
        elif pos + 1 < total and 0 < frame[pos + 1] < 0x80:  # 2 bytes: up to 16 KiB
            size = size & 0x7F | frame[pos + 1] << 7
            pos += 2
        else:
            size, pos = _read_varint(frame, pos)
        end = pos + size
        if end > total:
            raise BatchError(
                f"truncated batch: message {len(messages) + 1} at offset {pos} needs"
                f" {size} bytes, {total - pos} left"
            )
        append(frame[pos:end])
        pos = end
    if not messages:
        raise BatchError("empty batch: a b1 frame holds at least one message")
    return messages


class Batcher:
    """Collects outgoing messages and packs them on :meth:`flush`.

    Pure: whoever owns the loop calls :meth:`flush` once per tick and sends the frames.

    >>> batcher = Batcher(max_size=100)
    >>> batcher.add(b"up"); batcher.add(b"left")
    >>> batcher.pending, batcher.pending_bytes
    (2, 6)
    >>> [unpack(frame) for frame in batcher.flush()]
    [[b'up', b'left']]
    """

    __slots__ = ("_bytes", "_max_size", "_messages")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        """``max_size`` bounds each frame, as for :func:`pack`."""
        _check_max_size(max_size)
        self._max_size = max_size
        self._messages: list[bytes] = []
        self._bytes = 0

    @property
    def max_size(self) -> int:
        """The frame size limit given to :func:`pack`."""
        return self._max_size

    @property
    def pending(self) -> int:
        """Messages added since the last flush."""
        return len(self._messages)

    @property
    def pending_bytes(self) -> int:
        """Total size of the pending messages, without framing."""
        return self._bytes

    def add(self, message: bytes) -> None:
        """Queue ``message`` for the next :meth:`flush`."""
        self._messages.append(message)
        self._bytes += len(message)

    def flush(self) -> list[bytes]:
        """The pending messages packed into frames (maybe none); empties the batcher."""
        messages = self._messages
        if not messages:
            return []
        self._messages = []
        self._bytes = 0
        return pack(messages, self._max_size)

    def clear(self) -> int:
        """Drop the pending messages (stale updates, a closed channel); return how many."""
        dropped = len(self._messages)
        self._messages = []
        self._bytes = 0
        return dropped

    def __repr__(self) -> str:
        return f"<Batcher {self.pending} pending, {self._bytes} bytes, max_size {self._max_size}>"
