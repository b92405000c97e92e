"""What every process of the WebRTC figures shares: ICE, the peers' configuration, the
stage timeout, the browser page's path (the bench process, its clients, the servers).

ICE (:func:`ice_setup`): aioice is left alone by default, as users run it; it offers the
machine's non-loopback addresses and the peers meet there. It leaves 127.0.0.1 out, so on
a machine with no other address (or with ``BENCH_RTC_ICE=loopback``) every process of
these figures, raw and socker alike, replaces ``aioice.ice.get_host_addresses`` to offer
127.0.0.1 only (:func:`loopback_only`). Each figure's details say which (``ice``).
"""

from __future__ import annotations

import os
from typing import Any

ICE_ENV = "BENCH_RTC_ICE"
STAGE_TIMEOUT = 5.0
"""aiosocker's default per-stage timeout, kept: the figures are what a user gets."""
BROWSER_PATH = "/bench-rtc"
"""Where the socker-rtc server serves the browser page (``bench/rtc_page.html``)."""

_host_addresses: Any = None
"""aioice's own ``get_host_addresses``, once :func:`loopback_only` replaced it."""


def loopback_only() -> None:
    """Make aioice gather a single host candidate, 127.0.0.1 (it skips loopback itself)."""
    import aioice.ice

    global _host_addresses
    if _host_addresses is None:
        _host_addresses = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback


def ice_setup() -> str:
    """Set up ICE the same way in every process of the rtc figures; returns the mode.

    ``BENCH_RTC_ICE=host`` (the default) leaves aioice alone, as users run it: it offers
    the machine's non-loopback addresses, and the peers meet there (still this machine).
    Where there are none, or with ``BENCH_RTC_ICE=loopback``, :func:`loopback_only`.
    The server subprocesses inherit the variable, so raw and socker always match.
    """
    import aioice.ice

    wanted = os.environ.get(ICE_ENV, "host")
    if wanted not in ("host", "loopback"):
        raise ValueError(f"{ICE_ENV} is 'host' or 'loopback', got {wanted!r}")
    host_addresses = _host_addresses or aioice.ice.get_host_addresses
    if wanted == "host" and host_addresses(use_ipv4=True, use_ipv6=False):
        aioice.ice.get_host_addresses = host_addresses
        return "host"
    loopback_only()
    return "loopback"


def rtc_config() -> Any:
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[])  # never a public STUN server
