"""Batching: many small DataChannel messages in few SCTP messages.

aiortc sends one SCTP packet per ``send()`` and tops out near 2,000 small messages a
second; the kernel starts dropping UDP past ~3,000 (``webrtc-field-notes.md``, note 10).
Packing the messages of one loop tick into a few frames keeps the packet rate low.

Sans-I/O: no asyncio, no aiortc. :func:`pack` and :func:`unpack` are the codec;
:class:`Batcher` collects messages between flushes; :class:`Latest` keeps the newest
unsent message per key (latest-wins sending); :func:`ping`, :func:`pong` and
:func:`control` make and read the control frames.

Frame format (``docs/protocol.md``)
-----------------------------------
* ``b0`` + message: one message, as is (no length: it runs to the end of the frame).
* ``b1`` + (length, message) repeated: one or more messages, in order. The length is an
  unsigned LEB128 varint: 1 byte below 128, 2 below 16,384, at most 4; minimal form.
* ``b2`` + 8-byte id: PING, ``b3`` + 8-byte id: PONG (the id of the PING it answers).
  Control frames: the channel answers and times them itself (:func:`control`); they
  carry no messages and never reach the application.

:func:`pack` uses ``b0`` for a frame holding one message and ``b1`` otherwise; it keeps
every frame within ``max_size`` except the ``b0`` frame of a message that alone does not
fit (that frame is the message plus one byte).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Final, NamedTuple

from ..errors import SockerError

__all__ = [
    "BATCH",
    "CONTROL_SIZE",
    "DEFAULT_MAX_LATEST",
    "DEFAULT_MAX_SIZE",
    "MAX_MAX_SIZE",
    "PING",
    "PONG",
    "SINGLE",
    "BatchError",
    "Batcher",
    "Control",
    "Latest",
    "control",
    "pack",
    "ping",
    "pong",
    "unpack",
]

SINGLE: Final = 0xB0
"""Marker byte of a frame holding exactly one message, without a length."""

BATCH: Final = 0xB1
"""Marker byte of a frame holding length-prefixed messages."""

PING: Final = 0xB2
"""Marker byte of a PING control frame: ``b2`` + an 8-byte id, which the peer echoes."""

PONG: Final = 0xB3
"""Marker byte of a PONG control frame: ``b3`` + the 8-byte id of the PING it answers."""

CONTROL_SIZE: Final = 9
"""Size of a control frame: the marker and a big-endian unsigned 64-bit id."""

DEFAULT_MAX_LATEST: Final = 1024
"""Keys :class:`Latest` keeps a message for at most (latest-wins sending)."""

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
    if frame[0] in _CONTROL_NAMES:
        return BatchError(
            f"a {_CONTROL_NAMES[frame[0]]} control frame ({frame[0]:#04x}) carries no messages"
        )
    return BatchError(f"unknown batch marker {frame[0]:#04x}; expected 0xb0 or 0xb1")


def unpack(frame: bytes) -> list[bytes]:
    """The messages in one frame made by :func:`pack` (or a peer's equivalent).

    Raises :class:`BatchError` naming the problem: unknown marker, truncated or
    over-long length, a message running past the end, or an empty ``b1`` frame. A
    control frame (``b2``, ``b3``) holds no messages: read it with :func:`control`.
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


# -- control frames: PING and PONG ------------------------------------------------------

_CONTROL_NAMES: Final = {PING: "PING", PONG: "PONG"}
_MAX_ID: Final = (1 << 64) - 1


class Control(NamedTuple):
    """A control frame: its marker (:data:`PING` or :data:`PONG`) and its 64-bit id."""

    kind: int
    id: int

    @property
    def name(self) -> str:
        """``"PING"`` or ``"PONG"``."""
        return _CONTROL_NAMES[self.kind]


def _control_frame(kind: int, id: int) -> bytes:
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"a control frame's id is an int, got {type(id).__name__}")
    if not 0 <= id <= _MAX_ID:
        raise ValueError(f"a control frame's id is in 0..2**64-1, got {id}")
    return bytes((kind,)) + id.to_bytes(8, "big")


def ping(id: int) -> bytes:
    """A PING frame: ``b2`` + ``id`` as 8 bytes, big-endian. The id means something to
    the sender only (socker's channels put their clock there, in microseconds)."""
    return _control_frame(PING, id)


def pong(id: int) -> bytes:
    """The PONG answering the PING with ``id``: ``b3`` + the same 8 bytes."""
    return _control_frame(PONG, id)


def control(frame: bytes) -> Control | None:
    """The control frame ``frame`` is, or ``None`` if it is not one (its marker is not
    ``b2`` or ``b3``: :func:`unpack` reads it). Raises :class:`BatchError` for a control
    marker followed by anything but exactly 8 bytes."""
    if not frame or frame[0] not in _CONTROL_NAMES:
        return None
    if len(frame) != CONTROL_SIZE:
        raise BatchError(
            f"a {_CONTROL_NAMES[frame[0]]} frame is {CONTROL_SIZE} bytes (marker and 8-byte id),"
            f" got {len(frame)}"
        )
    return Control(frame[0], int.from_bytes(frame[1:], "big"))


# -- latest-wins sending ---------------------------------------------------------------


def _cost(message: bytes) -> int:
    n = len(message)
    return n + (1 if n < 0x80 else 2 if n < 0x4000 else len(_varint(n)))


class Latest:
    """The newest unsent message per key, oldest key first: latest-wins sending.

    :meth:`put` keeps one message per key; a newer one replaces the older, which keeps
    its key's place in line (the key has waited since then). :meth:`take` packs the
    oldest keys' messages into one frame and forgets them. At most ``max_keys`` keys
    wait; :meth:`put` refuses a new key beyond that (the table never grows unbounded).

    >>> latest = Latest(max_keys=2)
    >>> latest.put("a", b"1"), latest.put("b", b"1"), latest.put("a", b"2")
    (False, False, True)
    >>> latest.put("c", b"1")
    Traceback (most recent call last):
    ...
    OverflowError: 2 keys wait already (max_keys)
    >>> unpack(latest.take())
    [b'2', b'1']
    """

    __slots__ = ("_bytes", "_messages", "max_keys")

    def __init__(self, max_keys: int = DEFAULT_MAX_LATEST) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an int >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        """How many keys may wait at once."""
        self._messages: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._messages)

    def __contains__(self, key: object) -> bool:
        return key in self._messages

    @property
    def pending_bytes(self) -> int:
        """Total size of the waiting messages, without framing."""
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether a new key would be refused."""
        return len(self._messages) >= self.max_keys

    def put(self, key: Hashable, message: bytes) -> bool:
        """Keep ``message`` as ``key``'s newest; ``True`` if it replaced an unsent one.

        Raises :class:`OverflowError` for a new key while ``max_keys`` keys wait."""
        messages = self._messages
        old = messages.get(key)
        if old is None:
            if len(messages) >= self.max_keys:
                raise OverflowError(f"{len(messages)} keys wait already (max_keys)")
            messages[key] = message
            self._bytes += len(message)
            return False
        messages[key] = message  # an existing key keeps its place
        self._bytes += len(message) - len(old)
        return True

    def take(self, max_size: int = DEFAULT_MAX_SIZE) -> bytes | None:
        """One frame (as :func:`pack` makes them) of the oldest keys' messages, which are
        forgotten; ``None`` if none wait. The frame holds at least one message, and
        as many as fit ``max_size``."""
        messages = self._messages
        if not messages:
            return None
        taken: list[bytes] = []
        size = 1
        while messages:
            message = messages[next(iter(messages))]
            cost = _cost(message)
            if taken and size + cost > max_size:
                break
            messages.popitem(last=False)
            self._bytes -= len(message)
            taken.append(message)
            size += cost
        # The same arithmetic as pack(): what was taken makes exactly one frame.
        return pack(taken, max_size)[0]

    def clear(self) -> int:
        """Forget every waiting message; return how many there were."""
        count = len(self._messages)
        self._messages.clear()
        self._bytes = 0
        return count

    def __repr__(self) -> str:
        return f"<Latest {len(self)} keys waiting, {self._bytes} bytes, max_keys {self.max_keys}>"
