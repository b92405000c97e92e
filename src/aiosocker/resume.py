"""Session resume: what a dropped connection leaves behind, and where it waits.

With ``serve(..., resume=15)`` a server hands each client an opaque, unguessable token
(in a RESUME frame of the signaling envelope, see docs/protocol.md). When the
connection drops, the hub *parks* a :class:`Parked` record under that token for the
grace period, and keeps what is sent to it meanwhile (bounded). A client that
reconnects with ``?resume=TOKEN`` within the grace period -- to this process or, with a
shared :class:`Store` (Redis), another -- *claims* the record (once: a token works
once) and gets its id, user, state, rooms and stage back, then the missed messages.

The records are JSON (never pickle: whoever can write to the store must not be able to
run code in the servers), so ``conn.user`` and ``conn.state`` must be JSON data when
resume is on.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "QUERY_KEY",
    "MemoryStore",
    "Missed",
    "Parked",
    "RecordError",
    "Store",
    "new_token",
]

QUERY_KEY = "resume"
"""The query parameter a reconnecting client puts its token in."""

TOKEN_BYTES = 32
"""Random bytes in a token (256 bits: unguessable)."""

MAX_MISSED = 256
"""Messages kept for a parked session; past it the session starts fresh instead."""

MAX_MISSED_BYTES = 1 << 20
"""Bytes kept for a parked session; past it the session starts fresh instead."""


def new_token() -> str:
    """A fresh URL-safe token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class RecordError(ValueError):
    """Bytes that are not a parked-session record."""


@dataclass(frozen=True, slots=True)
class Parked:
    """What a dropped connection leaves behind for its resume."""

    id: str
    """The connection id the client gets back."""
    user: Any
    """``conn.user`` (JSON data)."""
    state: dict[str, Any]
    """``conn.state`` (JSON data)."""
    rooms: tuple[str, ...]
    """The rooms it was in."""
    stage: str
    """The stage it had reached."""
    expires: float = 0.0
    """Wall-clock time (``time.time()``) after which the record is void."""

    def encode(self) -> bytes:
        """The record as JSON bytes (raises TypeError if user or state is not JSON)."""
        return json.dumps(
            {
                "id": self.id,
                "user": self.user,
                "state": self.state,
                "rooms": list(self.rooms),
                "stage": self.stage,
                "expires": self.expires,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Parked:
        """The record in ``raw``; :class:`RecordError` if it is not one."""
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RecordError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RecordError("not an object")
        rooms, state = data.get("rooms"), data.get("state")
        if not isinstance(data.get("id"), str) or not isinstance(data.get("stage"), str):
            raise RecordError("id and stage must be strings")
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise RecordError("rooms must be a list of strings")
        if not isinstance(state, dict):
            raise RecordError("state must be an object")
        expires = data.get("expires")
        if not isinstance(expires, (int, float)):
            raise RecordError("expires must be a number")
        return cls(data["id"], data.get("user"), state, tuple(rooms), data["stage"], expires)


@dataclass(slots=True)
class Missed:
    """Messages sent to a parked session, bounded; ``overflowed`` once too many."""

    messages: deque[bytes] = field(default_factory=deque)
    size: int = 0
    overflowed: bool = False

    def add(self, data: bytes) -> None:
        """Keep ``data``; past the limits, keep nothing more and mark it overflowed."""
        if self.overflowed:
            return
        if len(self.messages) >= MAX_MISSED or self.size + len(data) > MAX_MISSED_BYTES:
            self.overflowed = True  # the client will start fresh: keep nothing more
            self.messages.clear()
            self.size = 0
            return
        self.messages.append(data)
        self.size += len(data)


class Store(Protocol):
    """Where parked sessions wait: in this process (:class:`MemoryStore`) or shared by
    every process of a deployment (``aiosocker.backends.redis``)."""

    async def park(self, token: str, record: Parked, grace: float) -> None:
        """Keep ``record`` under ``token`` for ``grace`` seconds."""

    async def claim(self, token: str) -> tuple[Parked, Missed] | None:
        """Take the record and its missed messages (once); ``None`` if the token is
        unknown, used or expired."""

    async def missed(self, token: str, data: bytes) -> None:
        """Keep ``data`` for the session parked under ``token`` (if it still is)."""


class MemoryStore:
    """A :class:`Store` in this process's memory (the default)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._records: dict[str, tuple[Parked, Missed]] = {}

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, (r, _) in self._records.items() if r.expires <= now]:
            del self._records[token]

    async def park(self, token: str, record: Parked, grace: float) -> None:
        """:meth:`Store.park`, in this process's memory (as JSON, as any store)."""
        self._expire()
        parked = Parked.decode(record.encode())  # JSON only, as any other store
        expires = self._clock() + grace
        self._records[token] = (
            Parked(parked.id, parked.user, parked.state, parked.rooms, parked.stage, expires),
            Missed(),
        )

    async def claim(self, token: str) -> tuple[Parked, Missed] | None:
        """:meth:`Store.claim`."""
        self._expire()
        return self._records.pop(token, None)

    async def missed(self, token: str, data: bytes) -> None:
        """:meth:`Store.missed`."""
        entry = self._records.get(token)
        if entry is not None:
            entry[1].add(data)

    def __len__(self) -> int:
        self._expire()
        return len(self._records)
