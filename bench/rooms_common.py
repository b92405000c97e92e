"""What the processes of the rooms, flood and metrics figures share: wire formats, names.

* **Fan-out** (``bench.figures.rooms``, group ``fanout``): every receiver opens with the
  players' ``JOIN`` message (:func:`bench.players_common.join_message`) and is put in the
  room :data:`FANOUT_ROOM`. One receiver then sends :func:`go_message`; the server waits
  until the room has that many members and makes ``count`` broadcasts of ``size`` bytes
  to it, yielding to the event loop after each (``await asyncio.sleep(0)``), then prints
  ``FANOUT <start> <end> <cpu_ns>`` (wall clock at the first and after the last broadcast
  call, and its CPU over that span). Servers run without keepalive pings, so what a
  receiver reads is the broadcasts' frames only: it counts bytes.
* **Redis** (group ``redis``): two socker processes on one ``redis-server``; the URL comes
  in the environment (:data:`REDIS_ENV`), since every server kind takes the same command
  line. Commands are text: ``join:ROOM``, ``burst:ROOM:COUNT:INTERVAL_MS`` (the server
  broadcasts COUNT stamped messages, :func:`stamped`, one every INTERVAL_MS), and the
  resume game's ``hello:NAME`` then ``move``.
* **Flood** (group ``flood``): the chain is ``hello`` (stays until the message is
  :data:`HELLO`) then ``echo``; the flooder's frames never say hello.
"""

from __future__ import annotations

import struct

FANOUT_ROOM = "fanout"
GO_MAGIC = b"GO!!"
_GO = struct.Struct(">4sIII")  # magic, members, count, size

REDIS_ENV = "BENCH_REDIS_URL"
"""The Redis URL the ``redis-socker`` kind serves with (set by the bench for its child)."""
RESUME_GRACE_S = 15.0
"""``serve(..., resume=)`` of the resume figure's servers."""
LATENCY_ROOM = "match"
"""The room ``hello:NAME`` joins on a ``redis-socker`` server; the latency bursts go to it."""
_STAMP = struct.Struct(">Id")  # sequence number, time.time() at the broadcast call

HELLO = b"hello"
FLOOD_RATE_MESSAGES = 200.0
"""``Rate(messages=...)`` of the limited flood server (the soak's limit; 1 s of burst)."""


def go_message(members: int, count: int, size: int) -> bytes:
    return _GO.pack(GO_MAGIC, members, count, size)


def parse_go(message: bytes) -> tuple[int, int, int] | None:
    """``(members, count, size)`` of a GO message; ``None`` for any other message."""
    if len(message) != _GO.size or not message.startswith(GO_MAGIC):
        return None
    _, members, count, size = _GO.unpack(message)
    return members, count, size


def fanout_payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def stamped(seq: int, now: float, size: int = 64) -> bytes:
    """A latency probe: its number, the sender's wall clock, padded to ``size`` bytes."""
    head = _STAMP.pack(seq, now)
    return head + bytes(max(0, size - len(head)))


def unstamp(message: bytes) -> tuple[int, float]:
    seq, sent = _STAMP.unpack_from(message)
    return int(seq), float(sent)
