"""What the players-per-core processes share: the game's rates and sizes, and its wire formats.

The scenario (``bench.figures.players``): N players each send a 32 B input at 30 Hz; the
server's 20 Hz game loop sends each room of 10 players a 256 B room state. Every process
of that figure imports this module: the bench, the players (``bench.clients.players``)
and the game servers (``bench.servers.players_socker``, ``bench.servers.players_socketio``).

An input carries its sequence number (1, 2, ...); a room state carries, for each of the
room's 10 slots, the last sequence number the server has taken from that player, and the
time the tick that built it began (``time.time()``: the wall clock, which every process
on the machine and the kernel's receive timestamps share). A player's input-to-state
latency is the time from sending input ``s`` to the arrival of the first state whose ack
for its slot is ``>= s``.

On python-socketio the same bytes travel as plain text events with a hex payload
(``42["input","<64 hex>"]``, ``42["state","<512 hex>"]``) over engine.io v4 on a
WebSocket: the cheaper of the two ways python-socketio carries bytes (binary attachments
cost it two WebSocket frames and a packet reassembly per event; see
``docs/performance.md``).
"""

from __future__ import annotations

import struct

INPUT_HZ = 30
"""Inputs per second per player."""
TICK_HZ = 20
"""The server's game loop: room states per second per player."""
ROOM_SIZE = 10
INPUT_BYTES = 32
STATE_BYTES = 256

JOIN_MAGIC = b"JOIN"
"""A socker player's first message: ``JOIN`` + its player number (u32, big-endian)."""

_STATE_HEAD = struct.Struct(">Id")  # tick number, tick start (time.time() seconds)
ACKS_AT = _STATE_HEAD.size  # 12: then ROOM_SIZE u32 acks, big-endian
_ACKS = struct.Struct(f">{ROOM_SIZE}I")
STAMP_AT = 4
"""Offset of the tick's start time (big-endian double) in a state."""

SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
SOCKETIO_INPUT_PREFIX = b'42["input","'
SOCKETIO_STATE_PREFIX = b'42["state","'
SOCKETIO_STATE_HEX_AT = len(SOCKETIO_STATE_PREFIX)
"""Where the state's hex starts in a socketio state event's text."""


def join_message(player: int) -> bytes:
    return JOIN_MAGIC + player.to_bytes(4, "big")


def parse_join(message: bytes) -> tuple[int, int]:
    """``(room, slot)`` of a player's join message."""
    if not message.startswith(JOIN_MAGIC) or len(message) != 8:
        raise ValueError(f"expected JOIN + u32, got {message[:16]!r}")
    return divmod(int.from_bytes(message[4:8], "big"), ROOM_SIZE)


def input_payload(seq: int) -> bytes:
    """Input ``seq`` (u32, big-endian) and 28 bytes of made-up controls."""
    return seq.to_bytes(4, "big") + bytes(range(4, INPUT_BYTES))


_FILL = bytes(range(256))


def encode_state(tick: int, stamp: float, acks: list[int], room: int) -> bytes:
    """A 256 B room state: tick, its start time, the room's 10 acks, then filler (what a
    real game sends: positions, health...; here the room number repeated)."""
    head = _STATE_HEAD.pack(tick & 0xFFFFFFFF, stamp) + _ACKS.pack(*acks)
    return head + (room & 0xFF).to_bytes(1, "big") + _FILL[: STATE_BYTES - len(head) - 1]


def socketio_input(seq: int) -> bytes:
    """The text of socketio input ``seq``."""
    return SOCKETIO_INPUT_PREFIX + input_payload(seq).hex().encode() + b'"]'
