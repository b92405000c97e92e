"""A DataChannel that fits the stage model: send bytes, receive bytes via a handler.

Small messages sent within one event-loop iteration are packed into one DataChannel
message and unpacked on the far side (aiortc pays per message: ~2,000 small messages/s
per direction unbatched). A game that outruns the link should lose stale updates, not
queue them: on an unreliable channel, :meth:`Channel.send` drops a message while more
than ``max_buffered`` bytes wait in the WebRTC stack, and :meth:`Channel.send_latest`
keeps only the newest unsent message per key until the stack drains.

Each channel also pings its peer (PING/PONG control frames, answered here and never
passed to the application): :attr:`Channel.rtt` is the round trip, and a peer that stops
answering for ``channel_timeout`` seconds closes the channel with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from ..background import Background
from .batch import (
    DEFAULT_MAX_LATEST,
    DEFAULT_MAX_SIZE,
    PING,
    PONG,
    Batcher,
    Latest,
    control,
    pack,
    ping,
    pong,
    unpack,
)
from .envelope import ChannelSpec

__all__ = [
    "DEFAULT_CHANNEL_TIMEOUT",
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_LATEST",
    "DEFAULT_PING_INTERVAL",
    "Channel",
    "MessageHandler",
]

if TYPE_CHECKING:
    from ..meter import Meter

logger = logging.getLogger("aiosocker.rtc")

DEFAULT_MAX_BUFFERED = 256 * 1024
"""Bytes an unreliable channel lets wait in the WebRTC stack before it drops updates."""

DEFAULT_PING_INTERVAL = 2.0
"""Seconds between a channel's PINGs while its peer answers them."""

DEFAULT_CHANNEL_TIMEOUT = 10.0
"""Seconds a channel waits for a PONG before it counts its peer as gone (aiortc alone
notices a vanished peer after ~30 s)."""

_MAX_OUTSTANDING: Final = 64  # unanswered PING ids remembered (a PONG names one of them)
_MAX_THRESHOLD: Final = (1 << 32) - 1  # bufferedAmountLowThreshold's range
_DRAIN_POLL: Final = 0.005  # seconds between looks at SCTP's bytes in flight, while held

MessageHandler: TypeAlias = Callable[[bytes], "Awaitable[None] | None"]
Hook: TypeAlias = Callable[["Channel"], "Awaitable[None] | None"]


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} is a number of seconds or None, got {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be > 0 seconds (or None: off), got {value}")
    return float(value)


def _now_us() -> int:
    return time.monotonic_ns() // 1000


class Channel:
    """One data channel of a peer connection (wraps an aiortc ``RTCDataChannel``)."""

    def __init__(
        self,
        dc: Any,
        spec: ChannelSpec,
        *,
        batch: bool = True,
        max_frame: int = DEFAULT_MAX_SIZE,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        meter: Meter | None = None,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        channel_timeout: float | None = DEFAULT_CHANNEL_TIMEOUT,
        max_latest: int = DEFAULT_MAX_LATEST,
        on_rtt: Callable[[float], None] | None = None,
        background: Background | None = None,
    ) -> None:
        self.spec = spec
        """The options the channel was created with."""
        self.batch = batch
        """Whether small messages are packed per loop iteration (on by default)."""
        self._dc = dc
        self._latest = Latest(max_latest)
        self.max_buffered = max_buffered
        self.ping_interval = _seconds("ping_interval", ping_interval)
        """Seconds between PINGs while the peer answers (``None``: this side never
        pings, so measures no :attr:`rtt` and never times out; it still answers)."""
        self.channel_timeout = _seconds("channel_timeout", channel_timeout)
        """Seconds without a PONG after which the peer counts as gone (``None``: never)."""
        self.sent = 0
        """Messages accepted by :meth:`send`, and messages of :meth:`send_latest` handed
        to the WebRTC stack (before batching)."""
        self.received = 0
        """Messages delivered to the handler (after unbatching)."""
        self.dropped = 0
        """Messages not sent: refused by :meth:`send` (closed, or the link backed up) or
        by :meth:`send_latest` (closed, or ``max_latest`` keys waiting), and messages of
        :meth:`send_latest` still waiting when the channel closed."""
        self.stale_dropped = 0
        """Messages of :meth:`send_latest` replaced by a newer one for their key before
        they were sent."""
        self.frames_sent = 0
        """DataChannel messages handed to the WebRTC stack (after batching; without the
        PING and PONG control frames)."""
        self.frames_received = 0
        """DataChannel messages received (before unbatching; without control frames)."""
        self.rtt: float | None = None
        """The last round trip measured by a PING and its PONG, in seconds (``None``
        before the first)."""
        self.pings_sent = 0
        """PING control frames sent."""
        self.pongs_received = 0
        """PONG control frames received that answered one of our PINGs."""
        self.close_reason: str | None = None
        """Why the channel closed (``None`` while it has not)."""
        self._meter = meter
        self._max_frame = max_frame
        self._batcher = Batcher(max_frame)
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._handler: MessageHandler | None = None
        self._open_hooks: list[Hook] = []
        self._close_hooks: list[Hook] = []
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        # The session's, so that its end also ends the handlers' and hooks' tasks.
        self._background = background if background is not None else Background()
        self._on_rtt = on_rtt
        # PING state: ids (our clock in us) not answered yet, oldest first; when the
        # first PING since the last PONG went; whether the peer speaks PING/PONG at all.
        self._outstanding: dict[int, None] = {}
        self._waiting_since: float | None = None
        self._last_ping = -math.inf
        self._armed = False
        self._ping_handle: asyncio.Handle | None = None
        self._drain_handle: asyncio.Handle | None = None
        dc.on("open", self._on_open)
        dc.on("close", self._on_close)
        dc.on("message", self._on_message)
        dc.on("bufferedamountlow", self._on_low)
        if dc.readyState == "open":
            self._opened.set()
            self._start_pinging()

    @property
    def dc(self) -> Any:
        """The underlying aiortc ``RTCDataChannel`` (W3C options, ``readyState``, ...)."""
        return self._dc

    @property
    def label(self) -> str:
        """The channel's label."""
        return self.spec.label

    @property
    def is_open(self) -> bool:
        """Whether messages can be sent now."""
        # readyState too: after close() the channel is "closing" until its close event,
        # and aiortc's send() would raise.
        return self._opened.is_set() and not self._closed.is_set() and self._dc.readyState == "open"

    @property
    def buffered_amount(self) -> int:
        """Bytes queued in the WebRTC stack, not yet sent."""
        return int(self._dc.bufferedAmount)

    @property
    def max_buffered(self) -> int:
        """Bytes the WebRTC stack may hold: past it, :meth:`send` drops (unreliable
        channels; it counts the bytes queued, ``bufferedAmount``) and :meth:`send_latest`
        holds back (it counts those and the bytes in flight: :attr:`congested`)."""
        return self._max_buffered

    @max_buffered.setter
    def max_buffered(self, value: int) -> None:
        self._max_buffered = value
        # aiortc's "bufferedamountlow" fires when bufferedAmount falls to this or below:
        # the moment send_latest's waiting messages may go.
        self._dc.bufferedAmountLowThreshold = min(max(int(value), 0), _MAX_THRESHOLD)
        if len(self._latest):
            self._schedule_flush()

    @property
    def in_flight(self) -> int:
        """Bytes SCTP has sent on this channel's peer connection and not yet seen
        acknowledged (all its channels together; 0 where the stack does not tell)."""
        # aiortc has no public counter for it, and bufferedAmount leaves it out: it
        # counts only what has not reached SCTP. aiortc's SCTP window ignores the
        # receiver's, so a receiver that falls behind can have hundreds of KB in flight.
        flight = getattr(getattr(self._dc, "transport", None), "_flight_size", 0)
        return flight if isinstance(flight, int) else 0

    @property
    def congested(self) -> bool:
        """Whether the WebRTC stack holds more than :attr:`max_buffered` bytes: queued
        (``bufferedAmount``) and in flight (:attr:`in_flight`) together. While it is,
        :meth:`send_latest` holds messages back."""
        return bool(self._dc.bufferedAmount + self.in_flight > self._max_buffered)

    @property
    def max_latest(self) -> int:
        """Keys :meth:`send_latest` keeps a waiting message for at most (1024)."""
        return self._latest.max_keys

    @max_latest.setter
    def max_latest(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"max_latest must be an int >= 1, got {value!r}")
        self._latest.max_keys = value

    @property
    def latest_pending(self) -> int:
        """Keys whose newest message waits for the link to drain (:meth:`send_latest`)."""
        return len(self._latest)

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Call ``handler(message)`` for each message received (usable as decorator)."""
        self._handler = handler
        return handler

    def on_open(self, hook: Hook) -> Hook:
        """Call ``hook(channel)`` when the channel opens."""
        self._open_hooks.append(hook)
        return hook

    def on_close(self, hook: Hook) -> Hook:
        """Call ``hook(channel)`` when the channel closes (the app may renegotiate)."""
        self._close_hooks.append(hook)
        return hook

    async def wait_open(self) -> None:
        """Wait until the channel is open."""
        await self._opened.wait()

    async def wait_closed(self) -> None:
        """Wait until the channel is closed."""
        await self._closed.wait()

    def send(self, data: bytes) -> bool:
        """Send ``data``; never blocks. Returns ``False`` if it was dropped.

        Dropped means: the channel is not open, or (unreliable channels) the WebRTC stack
        already holds more than ``max_buffered`` bytes, so this update would arrive stale.
        """
        if not self.is_open or (
            not self.spec.reliable and self._dc.bufferedAmount > self._max_buffered
        ):
            self._count_dropped()
            return False
        self.sent += 1
        if self._meter is not None:
            self._meter.channel_out[self.label] += 1
        if not self.batch:
            for frame in pack([data], self._max_frame):
                self._dc.send(frame)
                self.frames_sent += 1
            return True
        self._batcher.add(data)
        self._schedule_flush()
        return True

    def send_latest(self, key: Hashable, data: bytes) -> bool:
        """Send ``data`` as the newest state of ``key`` (latest wins); never blocks.

        While the channel is :attr:`congested` (the WebRTC stack holds more than
        :attr:`max_buffered` bytes, queued or in flight), only the newest unsent message
        per key waits here; an older one for the same key is dropped and counted
        (:attr:`stale_dropped`, and the meter's ``channel_dropped``). When the stack
        drains (its ``bufferedamountlow`` event, or SCTP's acknowledgements), the
        waiting messages go, the longest-waiting key first, a frame at a time while the
        channel is not congested. Uncongested, the message goes with this loop iteration's batch
        (a newer one for the same key within the iteration replaces it). Works on any
        channel, reliable ones included.

        Returns ``False`` if it was dropped at once: the channel is not open, or
        :attr:`max_latest` other keys wait already (the table never grows past that).
        """
        if not self.is_open:
            self._count_dropped()
            return False
        latest = self._latest
        try:
            replaced = latest.put(key, data)
        except OverflowError:
            self._count_dropped()
            return False
        if replaced:
            self.stale_dropped += 1
            if self._meter is not None:
                self._meter.channel_dropped[self.label] += 1
        self._schedule_flush()
        return True

    def flush(self) -> None:
        """Send what is batched now (called once per loop iteration automatically), then
        the messages of :meth:`send_latest`, unless the channel is congested."""
        self._flush_scheduled = False
        frames = self._batcher.flush()
        if not self.is_open:
            return
        for frame in frames:
            self._dc.send(frame)
            self.frames_sent += 1
        if len(self._latest):
            self._drain()

    def close(self) -> None:
        """Close the channel."""
        self._stop()
        self._dc.close()

    # -- latest-wins -----------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def _drain(self) -> None:
        # Hand the waiting messages over, oldest key first, a frame at a time, while
        # the stack holds at most max_buffered bytes. What resumes: "bufferedamountlow"
        # when the queue was over the mark, else a look at the bytes in flight soon.
        latest, dc = self._latest, self._dc
        while len(latest):
            queued = dc.bufferedAmount
            if queued + self.in_flight > self._max_buffered:
                if queued <= self._max_buffered and self._drain_handle is None:
                    self._drain_handle = self._loop.call_later(_DRAIN_POLL, self._poll)
                return
            before = len(latest)
            frame = latest.take(self._max_frame)
            assert frame is not None
            dc.send(frame)
            self.frames_sent += 1
            self.sent += before - len(latest)
            if self._meter is not None:
                self._meter.channel_out[self.label] += before - len(latest)

    def _poll(self) -> None:
        self._drain_handle = None
        self._on_low()

    def _on_low(self) -> None:
        if len(self._latest) and self.is_open:
            self._schedule_flush()

    def _count_dropped(self, count: int = 1) -> None:
        self.dropped += count
        if self._meter is not None:
            self._meter.channel_dropped[self.label] += count

    # -- PING and PONG ---------------------------------------------------------------

    def _start_pinging(self) -> None:
        if self.ping_interval is not None and self._ping_handle is None:
            self._ping_handle = self._loop.call_soon(self._ping_tick)

    def _stop(self) -> None:
        for handle in (self._ping_handle, self._drain_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._drain_handle = None
        waiting = self._latest.clear() + self._batcher.clear()  # never to be flushed now
        if waiting:
            self._count_dropped(waiting)

    def _ping_tick(self) -> None:
        self._ping_handle = None
        interval = self.ping_interval
        if interval is None or not self.is_open:
            return
        now = time.monotonic()
        timeout = self.channel_timeout
        since = self._waiting_since
        deadline = since + timeout if since is not None and timeout and self._armed else None
        if deadline is not None and now >= deadline:
            assert since is not None
            self._timed_out(now - since)
            return
        if since is None and now < self._last_ping + interval:
            delay = self._last_ping + interval - now  # answered: the next regular PING
        else:
            self._send_ping()
            # Unanswered PINGs are repeated sooner, so a few lost ones on an unreliable
            # channel do not count as a dead peer.
            delay = interval if timeout is None else min(interval, timeout / 8)
        if deadline is not None:
            delay = min(delay, deadline - now)
        self._ping_handle = self._loop.call_later(max(delay, 0.0), self._ping_tick)

    def _send_ping(self) -> None:
        id = _now_us()
        outstanding = self._outstanding
        if outstanding:
            id = max(id, next(reversed(outstanding)) + 1)  # ids only grow
        outstanding[id] = None
        if len(outstanding) > _MAX_OUTSTANDING:
            del outstanding[next(iter(outstanding))]
        now = time.monotonic()
        self._last_ping = now
        if self._waiting_since is None:
            self._waiting_since = now
        self._dc.send(ping(id))
        self.pings_sent += 1

    def _on_control(self, frame: bytes) -> None:
        try:
            message = control(frame)
        except Exception as exc:
            logger.warning("channel %r: dropped a malformed control frame: %s", self.label, exc)
            return
        assert message is not None
        if not self._armed:
            # The peer speaks PING/PONG: from now on, silence counts.
            self._armed = True
            if self._waiting_since is not None:
                self._waiting_since = time.monotonic()
        if message.kind == PING:
            if self._dc.readyState == "open":
                self._dc.send(pong(message.id))
            return
        outstanding = self._outstanding
        if message.id not in outstanding:
            return  # late (an older PING was answered after a newer one) or not ours
        now_us = _now_us()
        for id in list(outstanding):  # this PING and every older one: done
            del outstanding[id]
            if id == message.id:
                break
        self.pongs_received += 1
        self.rtt = (now_us - message.id) / 1e6
        # Still waiting for the PINGs sent after this one, if any (their id: their time).
        self._waiting_since = next(iter(outstanding)) / 1e6 if outstanding else None
        if self._on_rtt is not None:
            self._on_rtt(self.rtt)

    def _timed_out(self, silence: float) -> None:
        self.close_reason = (
            f"channel {self.label!r} did not answer PINGs for {silence:.3g} s"
            f" (channel_timeout={self.channel_timeout:g} s)"
        )
        logger.warning("%s: counting it as closed", self.close_reason)
        self._closed_now()
        self._dc.close()  # the peer, if it still hears us, learns it too

    # -- aiortc events ---------------------------------------------------------------

    def _on_open(self) -> None:
        self._opened.set()
        self._start_pinging()
        self._run_hooks(self._open_hooks)

    def _on_close(self) -> None:
        if self._closed.is_set():
            return
        if self.close_reason is None:
            self.close_reason = f"channel {self.label!r} closed"
        self._closed_now()

    def _closed_now(self) -> None:
        self._closed.set()
        self._stop()
        self._run_hooks(self._close_hooks)

    def _on_message(self, frame: bytes | str) -> None:
        if isinstance(frame, str):
            logger.warning("channel %r: ignored a text message", self.label)
            return
        if frame and (frame[0] == PING or frame[0] == PONG):
            self._on_control(frame)
            return
        self.frames_received += 1
        try:
            messages = unpack(frame)
        except Exception as exc:
            logger.warning("channel %r: dropped a malformed frame: %s", self.label, exc)
            return
        handler = self._handler
        self.received += len(messages)
        if self._meter is not None:
            self._meter.channel_in[self.label] += len(messages)
        if handler is None:
            return
        what = f"channel {self.label!r}: message handler"
        for message in messages:
            self._background.call(what, handler, message)

    def _run_hooks(self, hooks: list[Hook]) -> None:
        for hook in hooks:
            self._background.call(f"channel {self.label!r}: hook", hook, self)

    def __repr__(self) -> str:
        if self.is_open or self._closed.is_set():
            state = "open" if self.is_open else "closed"
        else:
            state = "closing" if self._opened.is_set() else "new"
        return f"<Channel {self.label!r} {state}>"
