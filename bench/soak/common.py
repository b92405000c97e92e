"""What the soak's processes share: the chain's messages, the server's limits, the plans
(full and short), the hostile clients and the close code each one must get.

The chain, on the server (:mod:`bench.soak.server`):

* ``hello`` (timeout :data:`STAGE_TIMEOUT`): ``b"hello"`` -> sends :data:`SCENE`;
* ``handshake`` (the same timeout): ``b"ready"`` -> sends :data:`GO`;
* rtc clients only (``?who=rtc...``): ``server_stages(conn)``, each stage with the same
  timeout; the ``game`` channel echoes what it gets;
* ``playing``: every message is a sequence-numbered :func:`seq_message`, echoed as it came
  with ``conn.write()``; the server checks each connection's numbers run 0, 1, 2...
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass

HOST = "127.0.0.1"

# -- the chain -------------------------------------------------------------------------

HELLO = b"hello"
SCENE = b"scene:" + b"s" * 200
"""hello's answer: some buffered scene data."""
READY = b"ready"
GO = b"go"
STAGE_TIMEOUT = 5.0
"""hello, handshake and every rtc stage."""

_SEQ = struct.Struct("!cI")


def seq_message(seq: int, pad: int = 24) -> bytes:
    """A playing message: ``b"S"``, the sequence number, ``pad`` bytes."""
    return _SEQ.pack(b"S", seq) + b"p" * pad


def seq_of(message: bytes) -> int | None:
    """The sequence number of a :func:`seq_message` (``None``: not one)."""
    if len(message) < _SEQ.size or message[:1] != b"S":
        return None
    return int(_SEQ.unpack_from(message)[1])


# -- the server's limits ---------------------------------------------------------------

MAX_SIZE = 64 * 1024
"""``serve(max_size=...)``: 64 KiB; one byte more closes with 1009."""
MAX_MEMORY = 1024 * 1024
"""``serve(max_memory=...)``: 1 MiB per connection; past it, 4413."""
RATE_MESSAGES = 200.0
"""``serve(rate=Rate(messages=...))``: messages/s per connection (burst: one second's
worth); past it, 4429. The well-behaved clients send 2-10 messages/s."""
CLOSE_TIMEOUT = 2.0
"""``serve(close_timeout=...)``: seconds a peer gets to answer a close frame; a peer that
never reads is dropped after that."""
PING_INTERVAL = 10.0
"""``serve(ping_interval=..., ping_timeout=...)``: keepalive, both ways."""

# -- who is who ------------------------------------------------------------------------
#
# Every client names itself in the query string (``/?who=<tag>``); the server's on_close
# hook counts closes by tag and by code.

WELL_WS = "ws"
"""A WebSocket client that walks the whole chain and plays, then closes with 1000."""
ABRUPT_WS = "ws-abrupt"
"""A WebSocket client that drops its TCP connection at a random point of the chain."""
WELL_RTC = "rtc"
"""An rtc client (real aiortc): chain, rtc stages, plays on both paths, closes 1000."""
ABRUPT_RTC = "rtc-abrupt"
"""An rtc client that drops its TCP connection at a random point, mid-ICE included."""

HOSTILE: dict[str, tuple[int | None, str]] = {
    "flood": (4429, "a flood of tiny frames in hello (over the connection's rate)"),
    "oversize": (1009, "one message of max_size + 1 bytes"),
    "text": (1003, "a text frame"),
    "silent": (4408, "opens the WebSocket and never says hello"),
    "rtc-garbage": (4400, "garbage signaling in rtc_ready"),
    "bigsend": (4413, "sends big messages in playing and never reads the echoes"),
    "rtc-defer": (4413, "app frames of ~max_size during the rtc stages (all deferred)"),
    "slowloris": (None, "a partial HTTP head, one byte a second (never a WebSocket)"),
}
"""Hostile tag -> (the close code the server's on_close must report, what it does).
``None``: it never becomes a connection; the server must drop its TCP connection."""

SLOWLORIS_LIMIT = 15.0
"""The server must drop a slowloris within this many seconds (websockets' open_timeout
is 10 s)."""


# -- the plans -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How big and how long a run is."""

    name: str
    ws_clients: int
    ws_procs: int
    rtc_clients: int
    rtc_procs: int
    duration: float
    """Seconds the clients keep starting sessions; each finishes the one it is in."""
    ramp: float
    """Seconds over which the clients' first connections are spread."""
    hostile_rounds: int
    """Times the whole set of hostile clients runs, spread over the duration."""
    abrupt: float
    """Chance that a session drops its TCP connection at a random point."""
    messages: tuple[int, int]
    """Each session plays between these many reliable messages..."""
    interval: float
    """...one every this many seconds (and as many on the DataChannel for rtc)."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


FULL = Plan(
    name="full",
    ws_clients=500,
    ws_procs=4,
    rtc_clients=50,
    rtc_procs=2,
    duration=90.0,
    ramp=10.0,
    hostile_rounds=3,
    abrupt=0.2,
    messages=(20, 60),
    interval=0.2,
)
SHORT = Plan(
    name="short",
    ws_clients=50,
    ws_procs=1,
    rtc_clients=5,
    rtc_procs=1,
    duration=15.0,
    ramp=2.0,
    hostile_rounds=1,
    abrupt=0.2,
    messages=(10, 30),
    interval=0.1,
)
PLANS = {plan.name: plan for plan in (FULL, SHORT)}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; ``None`` if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
