"""The demo's game: a shared world of dots, and the byte formats its messages use.

Game data travels on the unreliable DataChannel; control (scene, joins, leaves, chat,
stats) on the reliable WebSocket as small JSON documents. Pure: no I/O here.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PING",
    "PONG",
    "POSITION",
    "STATE",
    "Player",
    "World",
    "control",
    "parse_control",
]

SIZE = 800.0
"""The world is a SIZE x SIZE square."""

# Channel message types (first byte), little-endian payloads.
POSITION = 1  # client -> server: f32 x, f32 y
PING = 2  # client -> server: f64 client clock (ms); the server echoes it as PONG
PONG = 3
STATE = 4  # server -> client: u32 player id, f32 x, f32 y (one per player, batched)

_POSITION = struct.Struct("<Bff")
_PING = struct.Struct("<Bd")
_STATE = struct.Struct("<BIff")

COLORS = ("#ff6b6b", "#4ecdc4", "#ffd93d", "#6c5ce7", "#a3e635", "#f472b6", "#38bdf8")


def control(kind: str, **fields: Any) -> bytes:
    """A control message for the WebSocket."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode()


def parse_control(message: bytes) -> dict[str, Any]:
    """Parse a control message; ValueError if it is not one."""
    value = json.loads(message)
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError("a control message is a JSON object with a 'type'")
    return value


@dataclass(slots=True)
class Player:
    """One dot."""

    id: int
    name: str
    color: str
    x: float = SIZE / 2
    y: float = SIZE / 2
    stage: str = "hello"
    bot: bool = False

    def public(self) -> dict[str, Any]:
        """What every client may see of this player."""
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "x": round(self.x, 1),
            "y": round(self.y, 1),
            "stage": self.stage,
            "bot": self.bot,
        }


@dataclass
class World:
    """All players, and the messages that describe them."""

    players: dict[int, Player] = field(default_factory=dict)
    random_ids: bool = False
    """Random 31-bit player ids instead of 1, 2, 3...: several processes share one game
    (``--workers``), and their ids must not collide."""
    _next_id: int = 1

    def join(self, name: str, *, bot: bool = False) -> Player:
        """Add a player with a fresh id and colour."""
        pid = self._next_id
        self._next_id += 1
        if self.random_ids:
            pid = random.randrange(1, 1 << 31)
            while pid in self.players:
                pid = random.randrange(1, 1 << 31)
        clean = "".join(ch for ch in name if ch.isprintable())[:20] or f"player{pid}"
        player = Player(pid, clean, COLORS[pid % len(COLORS)], bot=bot)
        self.players[pid] = player
        return player

    def leave(self, pid: int) -> None:
        """Remove a player."""
        self.players.pop(pid, None)

    def scene(self, you: int, origin: str = "") -> bytes:
        """The buffered scene a new client gets: everyone, and who it is (``origin``
        names the process that serves them)."""
        return control(
            "scene",
            you=you,
            size=SIZE,
            players=[p.public() for p in self.players.values()],
            origin=origin,
        )

    def move(self, pid: int, message: bytes) -> bytes | None:
        """Apply a channel message from ``pid``; return a reply (PONG) if it needs one.

        Malformed game messages are ignored: the channel is unreliable anyway.
        """
        player = self.players.get(pid)
        if player is None or not message:
            return None
        kind = message[0]
        if kind == POSITION and len(message) == _POSITION.size:
            _, x, y = _POSITION.unpack(message)
            if x == x and y == y:  # not NaN
                player.x = min(max(x, 0.0), SIZE)
                player.y = min(max(y, 0.0), SIZE)
        elif kind == PING and len(message) == _PING.size:
            return bytes([PONG]) + message[1:]
        return None

    def states(self) -> list[bytes]:
        """One STATE message per player (the channel batches them into one frame)."""
        return [_STATE.pack(STATE, p.id, p.x, p.y) for p in self.players.values()]


def position(x: float, y: float) -> bytes:
    """A POSITION message."""
    return _POSITION.pack(POSITION, x, y)


def parse_state(message: bytes) -> tuple[int, float, float] | None:
    """(id, x, y) of a STATE message, or None."""
    if len(message) != _STATE.size or message[0] != STATE:
        return None
    _, pid, x, y = _STATE.unpack(message)
    return pid, x, y
