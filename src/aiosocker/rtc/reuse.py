"""Per-process state aiosocker's peer connections share, so a crowd of opens is cheaper.

aiortc sets every peer connection up from nothing: a new DTLS certificate (an EC key and
a signed X.509, ~0.15 ms), a new OpenSSL context around it (~0.3 ms) and a fresh list of
the host's addresses from the kernel (~0.35 ms). Measured with 50 opens at once, that
is a tenth of an open's CPU on each side. The WebRTC API lets an application reuse one
certificate (``RTCConfiguration.certificates``); aiortc has no such option, so
:func:`new_peer_connection` gives the connection the process's certificate while aiortc
constructs it, and :func:`cached_addresses` answers aioice's address lookup from a cache
of :data:`ADDRESS_TTL` seconds while one of aiosocker's peers gathers.

Both lean on aiortc's and aioice's internals and fall back to aiortc's own behaviour when
those are not what they expect; ``tests/integration/test_rtc_reuse.py`` fails if they stop
taking effect.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCConfiguration, RTCPeerConnection

__all__ = ["ADDRESS_TTL", "CERTIFICATE_TTL", "cached_addresses", "new_peer_connection"]

CERTIFICATE_TTL = 24 * 3600.0
"""Seconds one process certificate serves new peer connections (aiortc's are valid for
30 days; a connection keeps the one it started with)."""

ADDRESS_TTL = 2.0
"""Seconds the host's addresses are reused while aiosocker's peers gather candidates: an
address that appears or goes is offered (or no longer) that much later."""

_certificate: Any = None
_certificate_born = -float("inf")


def _shared_certificate() -> Any:
    """The process's DTLS certificate, renewed after :data:`CERTIFICATE_TTL` seconds.

    A subclass of aiortc's ``RTCCertificate`` that makes its OpenSSL context once per
    SRTP profile list, with the session cache off: a peer never resumes a DTLS session
    another peer negotiated (it always shows the certificate its fingerprint names).
    """
    global _certificate, _certificate_born
    now = time.monotonic()
    if _certificate is None or now - _certificate_born > CERTIFICATE_TTL:
        _certificate = _certificate_class().generateCertificate()
        _certificate_born = now
    return _certificate


@functools.cache
def _certificate_class() -> Any:
    """``SharedCertificate``, made on first use (aiortc is imported late)."""
    from aiortc.rtcdtlstransport import RTCCertificate
    from OpenSSL import SSL

    class SharedCertificate(RTCCertificate):
        def __init__(self, key: Any, cert: Any) -> None:
            super().__init__(key, cert)
            self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

        def _create_ssl_context(self, srtp_profiles: list[Any]) -> SSL.Context:
            key = tuple(profile.openssl_profile for profile in srtp_profiles)
            context = self._contexts.get(key)
            if context is None:
                context = super()._create_ssl_context(srtp_profiles)
                context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
                self._contexts[key] = context
            return context

    return SharedCertificate


class _GivesShared:
    """Stands in for ``RTCCertificate`` in aiortc's peer connection module while it
    constructs a connection: ``generateCertificate()`` returns the shared one."""

    @staticmethod
    def generateCertificate() -> Any:
        return _shared_certificate()


def new_peer_connection(configuration: RTCConfiguration) -> RTCPeerConnection:
    """``RTCPeerConnection(configuration)`` with the process's certificate."""
    import aiortc.rtcpeerconnection as module
    from aiortc import RTCPeerConnection

    original = getattr(module, "RTCCertificate", None)
    if original is None:  # pragma: no cover (another aiortc layout: its own certificate)
        return RTCPeerConnection(configuration)
    # Synchronous: nothing else runs on this thread while the name is swapped.
    module.RTCCertificate = _GivesShared  # type: ignore[attr-defined,assignment]
    try:
        return RTCPeerConnection(configuration)
    finally:
        module.RTCCertificate = original  # type: ignore[attr-defined]


# -- the host's addresses --------------------------------------------------------------

_gathering: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "aiosocker_rtc_gathering", default=False
)
_addresses: dict[tuple[bool, bool], tuple[float, list[str]]] = {}


def _wrap(lookup: Callable[..., list[str]]) -> Callable[..., list[str]]:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if not _gathering.get():
            return lookup(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        key = (use_ipv4, use_ipv6)
        now = time.monotonic()
        cached = _addresses.get(key)
        if cached is None or now - cached[0] > ADDRESS_TTL:
            cached = _addresses[key] = (now, lookup(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        return list(cached[1])

    get_host_addresses.aiosocker_wraps = lookup  # type: ignore[attr-defined]
    return get_host_addresses


@contextlib.contextmanager
def cached_addresses() -> Iterator[None]:
    """While this block runs (and in the tasks it starts), aioice's host address lookup
    is answered from the cache; every other caller in the process gets aioice's own."""
    import aioice.ice

    current = aioice.ice.get_host_addresses
    if getattr(current, "aiosocker_wraps", None) is None:
        # Wrapped again whenever someone else replaced it (tests and benchmarks do).
        _addresses.clear()
        aioice.ice.get_host_addresses = _wrap(current)
    token = _gathering.set(True)
    try:
        yield
    finally:
        _gathering.reset(token)
