"""A DataChannel that fits the stage model: send bytes, receive bytes via a handler.

Small messages sent within one event-loop iteration are packed into one DataChannel
message and unpacked on the far side (aiortc pays per message: ~2,000 small messages/s
per direction unbatched). A game that outruns the link should lose stale updates, not
queue them: on an unreliable channel, :meth:`Channel.send` drops a message while more
than ``max_buffered`` bytes wait in the WebRTC stack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from ..background import Background
from .batch import DEFAULT_MAX_SIZE, Batcher, pack, unpack
from .envelope import ChannelSpec

__all__ = ["DEFAULT_MAX_BUFFERED", "Channel", "MessageHandler"]

if TYPE_CHECKING:
    from ..meter import Meter

logger = logging.getLogger("aiosocker.rtc")

DEFAULT_MAX_BUFFERED = 256 * 1024
"""Bytes an unreliable channel lets wait in the WebRTC stack before it drops updates."""

MessageHandler: TypeAlias = Callable[[bytes], "Awaitable[None] | None"]
Hook: TypeAlias = Callable[["Channel"], "Awaitable[None] | None"]


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
    ) -> None:
        self.spec = spec
        """The options the channel was created with."""
        self.batch = batch
        """Whether small messages are packed per loop iteration (on by default)."""
        self.max_buffered = max_buffered
        self.sent = 0
        """Messages accepted by :meth:`send` (before batching)."""
        self.received = 0
        """Messages delivered to the handler (after unbatching)."""
        self.dropped = 0
        """Messages :meth:`send` dropped because the link was backed up."""
        self.frames_sent = 0
        """DataChannel messages handed to the WebRTC stack (after batching)."""
        self.frames_received = 0
        """DataChannel messages received (before unbatching)."""
        self._dc = dc
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
        self._background = Background()
        if dc.readyState == "open":
            self._opened.set()
        dc.on("open", self._on_open)
        dc.on("close", self._on_close)
        dc.on("message", self._on_message)

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
            not self.spec.reliable and self._dc.bufferedAmount > self.max_buffered
        ):
            self.dropped += 1
            if self._meter is not None:
                self._meter.channel_dropped[self.label] += 1
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
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Send what is batched now (called once per loop iteration automatically)."""
        self._flush_scheduled = False
        frames = self._batcher.flush()
        if not self.is_open:
            return
        for frame in frames:
            self._dc.send(frame)
            self.frames_sent += 1

    def close(self) -> None:
        """Close the channel."""
        self._dc.close()

    # -- aiortc events ---------------------------------------------------------------

    def _on_open(self) -> None:
        self._opened.set()
        self._run_hooks(self._open_hooks)

    def _on_close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._run_hooks(self._close_hooks)

    def _on_message(self, frame: bytes | str) -> None:
        if isinstance(frame, str):
            logger.warning("channel %r: ignored a text message", self.label)
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
