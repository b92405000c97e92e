"""Per-stage numbers of one server, sans-I/O: counted as plain integers where they
happen, read when someone asks (``/metrics`` through ``aiosocker.metrics``, the
``/status`` page through :meth:`Meter.snapshot`).

Counting costs an attribute increment on the paths it watches, and nothing at all for
a server without ``metrics=`` or ``status_page=``. Label sets stay bounded: stage names
(the application's, finite), close codes, channel labels; never connection ids or
user data.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .stages import Entered

__all__ = ["BUCKETS", "Histogram", "Meter", "Metered"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the duration histograms, as Prometheus' ``le`` labels."""

RECENT = 512
"""Durations kept per histogram for the status page's percentiles."""

WINDOW = 600.0
"""Seconds of close codes the status page shows (the last ten minutes)."""


@dataclass
class Histogram:
    """Cumulative-bucket counts, their sum, and the latest values for percentiles."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    def observe(self, value: float) -> None:
        """Count ``value`` (seconds) in its bucket and keep it among the recent ones."""
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.recent.append(value)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        running, out = 0, []
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out

    def percentile(self, fraction: float) -> float | None:
        """The ``fraction`` percentile of the latest values (``None`` if none)."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Metered(Protocol):
    """What ``/metrics`` and ``/status`` read: a hub's meter and its live stages."""

    @property
    def meter(self) -> Meter | None: ...

    def live_stages(self) -> Iterator[str]: ...


class Meter:
    """The numbers of one hub. Connections, the hub and the rtc sessions call it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.entries: Counter[str] = Counter()
        """Stage entries by stage name."""
        self.exits: Counter[tuple[str, str]] = Counter()
        """Stage exits by (stage, how): advance, jump, reset, timeout, or a close code."""
        self.stage_seconds: dict[str, Histogram] = {}
        self.closes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        """Handler errors by stage."""
        self.queue_full = 0
        self.broadcasts = 0
        self.fanout = 0
        self.rtc_opens = 0
        self.rtc_open_seconds = Histogram()
        self.channel_in: Counter[str] = Counter()
        self.channel_out: Counter[str] = Counter()
        self.channel_dropped: Counter[str] = Counter()
        self.recent_closes: deque[tuple[float, int]] = deque(maxlen=10_000)

    # -- what the parts report ---------------------------------------------------------

    def reader(self, receive: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``receive`` wrapped to count each incoming message and its bytes."""

        def counted(message: Any) -> Any:
            self.messages_in += 1
            self.bytes_in += len(message)
            return receive(message)

        return counted

    def sent(self, size: int) -> None:
        """A message of ``size`` bytes went out (or was queued to)."""
        self.messages_out += 1
        self.bytes_out += size

    def moved(self, left: Entered | None, entered: Entered) -> None:
        """A stage was entered (a :attr:`Stages.observer <aiosocker.Stages.observer>`)."""
        self.entries[entered.stage] += 1
        if left is not None:
            self._left(left, entered.via, entered.at)

    def ended(self, last: Entered | None, code: int, reason_timeout: bool) -> None:
        """A connection ended in stage ``last`` with close ``code``."""
        self.closes[code] += 1
        self.recent_closes.append((self._clock(), code))
        if last is not None:
            self._left(last, "timeout" if reason_timeout else str(code), self._clock())

    def _left(self, left: Entered, how: str, at: float) -> None:
        self.exits[(left.stage, how)] += 1
        histogram = self.stage_seconds.get(left.stage)
        if histogram is None:
            histogram = self.stage_seconds[left.stage] = Histogram()
        histogram.observe(max(0.0, at - left.at))

    def error(self, stage: str) -> None:
        """A handler of ``stage`` raised."""
        self.errors[stage] += 1

    def broadcast(self, recipients: int) -> None:
        """A broadcast was queued to ``recipients`` local connections."""
        self.broadcasts += 1
        self.fanout += recipients

    def rtc_opened(self, seconds: float) -> None:
        """An rtc handshake opened its channels in ``seconds``."""
        self.rtc_opens += 1
        self.rtc_open_seconds.observe(seconds)

    # -- what readers ask ----------------------------------------------------------------

    def recent_close_codes(self) -> Mapping[int, int]:
        """Close codes of the last :data:`WINDOW` seconds."""
        since = self._clock() - WINDOW
        return Counter(code for at, code in self.recent_closes if at >= since)

    def snapshot(self, live_stages: Iterable[str]) -> dict[str, Any]:
        """Everything, as JSON data (the status page's feed). ``live_stages`` is the
        current stage of every live connection."""
        # In the order stages were first entered: the chain's order, for a funnel.
        stages = list(dict.fromkeys([*self.entries, *(s for s, _ in self.exits)]))
        now = Counter(live_stages)
        funnel = []
        for name in stages:
            histogram = self.stage_seconds.get(name)
            exits = {how: n for (stage, how), n in self.exits.items() if stage == name}
            funnel.append(
                {
                    "stage": name,
                    "now": now.get(name, 0),
                    "entered": self.entries.get(name, 0),
                    "exits": exits,
                    "errors": self.errors.get(name, 0),
                    "p50": histogram.percentile(0.5) if histogram else None,
                    "p95": histogram.percentile(0.95) if histogram else None,
                }
            )
        return {
            "funnel": funnel,
            "live": sum(now.values()),
            "closes": {str(code): n for code, n in sorted(self.recent_close_codes().items())},
            "messages": {
                "in": self.messages_in,
                "out": self.messages_out,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            },
            "rtc": {
                "opens": self.rtc_opens,
                "p50": self.rtc_open_seconds.percentile(0.5),
                "p95": self.rtc_open_seconds.percentile(0.95),
            },
            "broadcasts": {"count": self.broadcasts, "fanout": self.fanout},
            "queue_full": self.queue_full,
        }
