"""What the lab's peers share: the stream they measure with, the selected candidate pair,
JSON-lines events.

Both peers run as scripts in a namespace (``python peers/server.py CONFIG``), so this is
imported as ``common``. Times are ``time.monotonic()``: one clock for every process on
the machine, namespaces included, so a sender's timestamp gives the one-way latency.

Messages (one each, binary):

* game channel (unordered, never retransmitted): ``G`` seq(u32) t(f64 ms) + padding: the
  stream; ``P`` seq t: a ping, echoed as ``Q`` seq t.
* chat channel (ordered, reliable): ``C`` seq t + padding.
* WebSocket: ``W`` seq t (the stream), ``R`` + JSON (a report), or a text command.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import sys
import time
from typing import Any

from aiosocker.rtc import ChannelSpec, RtcSession

CHANNELS = [
    ChannelSpec("game"),  # unordered, max_retransmits 0: UDP-like
    ChannelSpec("chat", ordered=True, max_retransmits=None),  # ordered, reliable
]
SEQ_T = struct.Struct(">Id")
PAD = b"x" * 48  # a position update's size, roughly


def now_ms() -> float:
    return time.monotonic() * 1000


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout for the test."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 2)

    return {
        "n": len(ordered),
        "p50": pick(0.5),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
    }


def candidate_info(candidate: Any) -> dict[str, Any]:
    return {
        "type": candidate.type,
        "address": f"{candidate.host}:{candidate.port}",
        "transport": candidate.transport,
    }


def selected_pair(session: RtcSession) -> dict[str, Any]:
    """The candidate pair ICE nominated, from aioice (aiortc has no getStats for it),
    and the local candidates gathered."""
    pc = session.pc
    sctp = pc.sctp if pc is not None else None
    if sctp is None:
        return {}
    ice = sctp.transport.transport  # RTCDtlsTransport -> RTCIceTransport
    connection = ice._connection  # aioice.Connection
    pair = connection._nominated.get(1)
    return {
        "local": candidate_info(pair.local_candidate) if pair else None,
        "remote": candidate_info(pair.remote_candidate) if pair else None,
        "gathered": sorted({c.type for c in connection.local_candidates}),
        "dropped_candidates": getattr(session, "dropped_candidates", None),
    }


class Streams:
    """One side's sending and receiving for a measurement."""

    def __init__(self, session: RtcSession, send_ws: Any) -> None:
        self.session = session
        self.send_ws = send_ws
        self.rtt: list[float] = []
        self.pongs = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None
        self.reset(0.0)

    def reset(self, window: float) -> None:
        """Forget the last measurement; the next one lasts ``window`` seconds."""
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        self.window = window
        self.sent = {"game": 0, "game_refused": 0, "chat": 0, "ws": 0}
        self.game_latency: dict[int, float] = {}  # seq -> one-way ms
        self.game_older = 0  # arrived after a newer one: latest-wins drops it
        self.newest_seq = -1
        self.newest_t = 0.0
        self.stale: list[float] = []  # age of the newest state held, sampled
        self.chat: list[int] = []
        self.ws: list[int] = []
        self.chat_latency: list[float] = []
        self.ws_latency: list[float] = []

    # -- receiving --

    def on_game(self, message: bytes) -> None:
        kind = message[:1]
        if kind == b"G":
            seq, t = SEQ_T.unpack_from(message, 1)
            self.game_latency[seq] = now_ms() - t
            if seq > self.newest_seq:
                self.newest_seq, self.newest_t = seq, t
                if self._sampler is None and self.window:
                    self._sampler = asyncio.ensure_future(self._sample(self.window))
            else:
                self.game_older += 1
        elif kind == b"P":
            self.session.send(b"Q" + message[1:], "game")
        elif kind == b"Q":
            _, t = SEQ_T.unpack_from(message, 1)
            self.rtt.append(now_ms() - t)
            self.pongs.set()

    def on_chat(self, message: bytes) -> None:
        seq, t = SEQ_T.unpack_from(message, 1)
        self.chat.append(seq)
        self.chat_latency.append(now_ms() - t)

    def on_ws(self, message: bytes) -> None:
        seq, t = SEQ_T.unpack_from(message, 1)
        self.ws.append(seq)
        self.ws_latency.append(now_ms() - t)

    async def _sample(self, seconds: float) -> None:
        """Every 5 ms for ``seconds``: how old is the newest state this side holds?"""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.stale.append(now_ms() - self.newest_t)
            await asyncio.sleep(0.005)

    # -- sending --

    async def stream(self, seconds: float, hz: float) -> None:
        """Every tick: one game update, one chat message, one WebSocket message."""
        ticks = int(seconds * hz)
        start = time.monotonic()
        for i in range(ticks):
            if self.session.send(b"G" + SEQ_T.pack(i, now_ms()) + PAD, "game"):
                self.sent["game"] += 1
            else:
                self.sent["game_refused"] += 1
            self.session.send(b"C" + SEQ_T.pack(i, now_ms()) + PAD, "chat")
            self.sent["chat"] += 1
            await self.send_ws(b"W" + SEQ_T.pack(i, now_ms()))
            self.sent["ws"] += 1
            delay = start + (i + 1) / hz - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def ping(self, count: int, interval: float, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        for i in range(count):
            self.session.send(b"P" + SEQ_T.pack(i, now_ms()), "game")
            await asyncio.sleep(interval)
        deadline = time.monotonic() + timeout
        while len(self.rtt) < count and time.monotonic() < deadline:
            self.pongs.clear()
            try:
                await asyncio.wait_for(self.pongs.wait(), deadline - time.monotonic())
            except TimeoutError:
                break

    async def drain(self, chat: int, ws: int, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Wait (bounded) until the reliable pipes delivered ``chat`` and ``ws`` messages:
        under loss, retransmissions arrive late, and the report must not cut them off."""
        deadline = time.monotonic() + timeout
        while (len(self.chat) < chat or len(self.ws) < ws) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def report(self) -> dict[str, Any]:
        """What this side sent and received."""
        if self._sampler is not None:
            self._sampler.cancel()
        received = sorted(self.game_latency)
        return {
            "sent": dict(self.sent),
            "game": {
                "received": len(received),
                "latency_ms": percentiles(list(self.game_latency.values())),
                "older_than_newest": self.game_older,
                "staleness_ms": percentiles(self.stale),
                "channel_dropped": self._dropped("game"),
            },
            "chat": {
                "received": len(self.chat),
                "in_order": self.chat == list(range(len(self.chat))),
                "latency_ms": percentiles(self.chat_latency),
            },
            "ws": {
                "received": len(self.ws),
                "in_order": self.ws == list(range(len(self.ws))),
                "latency_ms": percentiles(self.ws_latency),
            },
            "rtt_ms": percentiles(self.rtt),
        }

    def _dropped(self, label: str) -> int | None:
        try:
            return int(self.session.channel(label).dropped)
        except (LookupError, AttributeError):
            return None
