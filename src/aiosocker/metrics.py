"""``/metrics``: a hub's :class:`~aiosocker.meter.Meter` in Prometheus' text format
(``aiosocker[metrics]``, the ``prometheus_client`` package).

The numbers are read at scrape time by a custom collector, so the paths they count
pay for an integer increment, never for a Prometheus call. Each hub has its own
registry: two servers in one process do not mix their numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

try:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "metrics=True needs prometheus_client: pip install 'aiosocker[metrics]'"
    ) from exc

from .meter import Histogram, Metered
from .routes import Route

__all__ = ["CONTENT_TYPE", "MeterCollector", "metrics_route"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "aiosocker_"


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(PREFIX + name, doc, labels=labels)


def _add(family: HistogramMetricFamily, values: list[str], histogram: Histogram) -> None:
    family.add_metric(values, histogram.cumulative(), histogram.total)


class MeterCollector(Collector):
    """Reads a hub's meter (and its live connections) on every scrape."""

    def __init__(self, hub: Metered) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        """The metrics, read from the hub and its meter now (at scrape time)."""
        hub, meter = self.hub, self.hub.meter
        assert meter is not None
        live = GaugeMetricFamily(
            PREFIX + "connections", "Live connections by current stage.", labels=["stage"]
        )
        for stage, count in sorted(Counter(hub.live_stages()).items()):
            live.add_metric([stage], count)
        yield live

        def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, labels=labels)

        entries = counter("stage_entries", "Stage entries.", ["stage"])
        for stage, n in sorted(meter.entries.items()):
            entries.add_metric([stage], n)
        yield entries
        exits = counter(
            "stage_exits",
            "Stage exits by how: advance, jump, reset, timeout, or the close code.",
            ["stage", "how"],
        )
        for (stage, how), n in sorted(meter.exits.items()):
            exits.add_metric([stage, how], n)
        yield exits
        seconds = _histogram("stage_seconds", "Time spent in a stage, per visit.", ["stage"])
        for stage, histogram in sorted(meter.stage_seconds.items()):
            _add(seconds, [stage], histogram)
        yield seconds
        closes = counter("closes", "Connections ended, by close code.", ["code"])
        for code, n in sorted(meter.closes.items()):
            closes.add_metric([str(code)], n)
        yield closes
        errors = counter("handler_errors", "Stage handlers that raised, by stage.", ["stage"])
        for stage, n in sorted(meter.errors.items()):
            errors.add_metric([stage], n)
        yield errors
        for name, doc, value in (
            ("messages_in", "Messages received on WebSockets.", meter.messages_in),
            ("bytes_in", "Bytes received in WebSocket messages.", meter.bytes_in),
            ("messages_out", "Messages sent or queued on WebSockets.", meter.messages_out),
            ("bytes_out", "Bytes sent or queued in WebSocket messages.", meter.bytes_out),
            ("queue_full_drops", "Broadcast deliveries dropped: a full queue.", meter.queue_full),
            ("broadcasts", "Broadcasts made in this process.", meter.broadcasts),
            ("broadcast_fanout", "Local deliveries of those broadcasts.", meter.fanout),
            ("rtc_opens", "WebRTC sessions whose channels opened.", meter.rtc_opens),
        ):
            family = counter(name, doc)
            family.add_metric([], value)
            yield family
        rtc = _histogram("rtc_open_seconds", "READY to channels open, per session.", [])
        _add(rtc, [], meter.rtc_open_seconds)
        yield rtc
        for name, doc, table in (
            ("channel_messages_in", "DataChannel messages received.", meter.channel_in),
            ("channel_messages_out", "DataChannel messages sent.", meter.channel_out),
            ("channel_drops", "DataChannel messages dropped (congested).", meter.channel_dropped),
        ):
            family = counter(name, doc, ["channel"])
            for label, n in sorted(table.items()):
                family.add_metric([label], n)
            yield family


def metrics_route(hub: Metered) -> Route:
    """The ``/metrics`` route of ``hub`` (private: admission applies)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeterCollector(hub))
    return Route(CONTENT_TYPE, lambda: generate_latest(registry), private=True)
