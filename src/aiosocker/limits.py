"""Rate limits, sans-I/O: token buckets for a connection's messages and for the new
connections of one IP address. Time is passed in (``now``, in seconds), so the rules
are tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from .errors import HandshakeRejected

__all__ = ["Bucket", "PerIp", "Rate"]


@dataclass(frozen=True, slots=True)
class Rate:
    """How much a connection may send: ``messages`` and/or ``bytes`` per second, with a
    burst of ``burst`` seconds' worth. Past it the connection closes with 4429.

    >>> Rate(messages=100, bytes=64_000)        # 100 msg/s and 64 kB/s, 1 s of burst
    Rate(messages=100, bytes=64000, burst=1.0)
    """

    messages: float | None = None
    """Messages per second (``None``: no limit on the count)."""
    bytes: float | None = None
    """Payload bytes per second (``None``: no limit on the volume)."""
    burst: float = 1.0
    """Seconds of allowance a quiet connection saves up (at least one message's)."""

    def __post_init__(self) -> None:
        if self.messages is None and self.bytes is None:
            raise ValueError("Rate needs messages=, bytes= or both")
        for name in ("messages", "bytes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Rate {name} must be positive, got {value!r}")
        if not self.burst > 0:
            raise ValueError(f"Rate burst must be positive seconds, got {self.burst!r}")


class Bucket:
    """Token buckets of one :class:`Rate`: :meth:`take` says whether a message fits."""

    __slots__ = ("_bytes", "_last", "_messages", "rate")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._messages = (rate.messages or 0) * rate.burst
        self._bytes = (rate.bytes or 0) * rate.burst
        self._last = now

    def take(self, size: int, now: float) -> bool:
        """Spend one message of ``size`` bytes; ``False`` if that is over the rate."""
        rate = self.rate
        elapsed = max(0.0, now - self._last)
        self._last = now
        ok = True
        if rate.messages is not None:
            cap = max(1.0, rate.messages * rate.burst)
            self._messages = min(cap, self._messages + elapsed * rate.messages) - 1
            ok = self._messages >= 0
        if rate.bytes is not None:
            cap = max(float(size), rate.bytes * rate.burst)
            self._bytes = min(cap, self._bytes + elapsed * rate.bytes) - size
            ok = ok and self._bytes >= 0
        return ok


class PerIp:
    """Per-IP caps on concurrent connections and on new connections per second.

    :meth:`check` raises :class:`~aiosocker.HandshakeRejected` (503 for too many open,
    429 for too many new); :meth:`count` holds a place, :meth:`release` frees it.
    """

    __slots__ = ("_buckets", "_open", "max_open", "new_per_s")

    def __init__(self, max_open: int | None, new_per_s: float | None) -> None:
        if max_open is not None and max_open < 1:
            raise ValueError(f"max_per_ip must be at least 1, got {max_open}")
        if new_per_s is not None and not new_per_s > 0:
            raise ValueError(f"new_per_ip must be positive, got {new_per_s}")
        self.max_open = max_open
        self.new_per_s = new_per_s
        self._open: dict[str, int] = {}
        self._buckets: dict[str, Bucket] = {}

    @property
    def active(self) -> bool:
        """Whether any cap is set."""
        return self.max_open is not None or self.new_per_s is not None

    def check(self, ip: str, now: float) -> None:
        """Refuse a new connection from ``ip`` over a cap; every call counts against
        ``new_per_s``, refused or not."""
        if self.max_open is not None and self._open.get(ip, 0) >= self.max_open:
            raise HandshakeRejected(
                HTTPStatus.SERVICE_UNAVAILABLE, f"too many connections from {ip}"
            )
        if self.new_per_s is not None:
            bucket = self._buckets.get(ip)
            if bucket is None:
                rate = Rate(messages=self.new_per_s, burst=max(1.0, 1.0 / self.new_per_s))
                bucket = self._buckets[ip] = Bucket(rate, now)
            if not bucket.take(0, now):
                raise HandshakeRejected(
                    HTTPStatus.TOO_MANY_REQUESTS, f"too many new connections from {ip}"
                )
            if len(self._buckets) > 10_000:  # bounded memory under a spray of addresses
                self._forget(now)

    def count(self, ip: str) -> None:
        """A connection from ``ip`` was admitted: it holds a place until released."""
        self._open[ip] = self._open.get(ip, 0) + 1

    def release(self, ip: str) -> None:
        """A connection :meth:`count` counted has ended (or never opened)."""
        left = self._open.get(ip, 0) - 1
        if left > 0:
            self._open[ip] = left
        else:
            self._open.pop(ip, None)

    def _forget(self, now: float) -> None:
        # A bucket idle for its burst is full again: dropping it changes nothing.
        idle = [ip for ip, b in self._buckets.items() if now - b._last > b.rate.burst]
        for ip in idle:
            del self._buckets[ip]
