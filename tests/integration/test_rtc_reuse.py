"""What aiosocker's peer connections share per process (``aiosocker.rtc.reuse``): one DTLS
certificate and its OpenSSL context, and the host's addresses for a moment.

These lean on aiortc's and aioice's internals, so the tests check that they still take
effect (an aiortc upgrade that breaks them fails here, not silently in a benchmark), and
that a channel still opens between two peers that share the certificate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aioice.ice
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from OpenSSL import SSL

from aiosocker.rtc import reuse
from aiosocker.rtc.envelope import ChannelSpec
from aiosocker.rtc.peer import (
    accept_offer,
    answer_offer,
    close_peer,
    create_channel,
    make_offer,
    new_peer,
)

SRTP_PROFILES = [SRTP_AES128_CM_SHA1_80]


def _certificate(pc: RTCPeerConnection) -> object:
    return pc._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]


def _fingerprint(sdp: str) -> str:
    return next(line for line in sdp.splitlines() if line.startswith("a=fingerprint:"))


@pytest.fixture
def fresh_certificate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(reuse, "_certificate", None)
    yield


async def test_peers_share_one_certificate_and_its_context(fresh_certificate: None) -> None:
    a, b = new_peer(), new_peer()
    try:
        assert _certificate(a) is _certificate(b)
        # A connection of aiortc's own, made in between, keeps getting its own certificate.
        own = RTCPeerConnection()
        assert _certificate(own) is not _certificate(a)
        await own.close()
        for pc in (a, b):
            pc.createDataChannel("x")
        assert _fingerprint(await make_offer(a)) == _fingerprint(await make_offer(b))
        certificate = _certificate(a)
        contexts = [certificate._create_ssl_context(SRTP_PROFILES) for _ in range(2)]  # type: ignore[attr-defined]
        assert contexts[0] is contexts[1]
        # No session cache: a peer never resumes a DTLS session another peer made.
        assert contexts[0].get_session_cache_mode() == SSL.SESS_CACHE_OFF
    finally:
        await close_peer(a)
        await close_peer(b)


async def test_the_certificate_is_renewed_after_its_time(
    fresh_certificate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = new_peer()
    monkeypatch.setattr(reuse, "CERTIFICATE_TTL", 0.0)
    await asyncio.sleep(0.01)
    second = new_peer()
    try:
        assert _certificate(first) is not _certificate(second)
    finally:
        await close_peer(first)
        await close_peer(second)


async def test_a_channel_opens_between_peers_sharing_the_certificate(
    fresh_certificate: None,
) -> None:
    """Both ends in this process: the same certificate on both sides of one DTLS
    handshake, and data crosses (loopback-only addresses, as the rtc tests run)."""
    offerer, answerer = new_peer(), new_peer()
    assert _certificate(offerer) is _certificate(answerer)
    spec = ChannelSpec("game", ordered=True)
    channel = create_channel(offerer, spec)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    @answerer.on("datachannel")  # type: ignore[misc]
    def _announced(dc: object) -> None:
        dc.on("message", received.put_nowait)  # type: ignore[attr-defined]

    opened = asyncio.Event()
    channel.on("open", opened.set)
    try:
        answer = await accept_offer(answerer, await make_offer(offerer))
        await answer_offer(offerer, answer)
        await asyncio.wait_for(opened.wait(), 10)
        channel.send(b"through")
        assert await asyncio.wait_for(received.get(), 10) == b"through"
    finally:
        await close_peer(offerer)
        await close_peer(answerer)


def test_addresses_are_cached_only_while_aiosocker_gathers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bool, bool]] = []
    answers = [["192.0.2.1"], ["192.0.2.2"]]

    def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        calls.append((use_ipv4, use_ipv6))
        return list(answers[min(len(calls), 2) - 1])

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lookup)
    with reuse.cached_addresses():
        first = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
        again = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert first == again == ["192.0.2.1"]
    assert calls == [(True, False)]
    # Anyone else in the process asks the kernel (here: the lookup) every time.
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["192.0.2.2"]
    assert len(calls) == 2
    # Past the TTL, aiosocker's peers ask again too.
    monkeypatch.setattr(reuse, "ADDRESS_TTL", -1.0)
    with reuse.cached_addresses():
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["192.0.2.2"]
    assert len(calls) == 3


async def test_gathering_uses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiortc gathers inside make_offer: the lookup runs once for two offers."""
    original = aioice.ice.get_host_addresses
    calls = 0

    def lookup(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        nonlocal calls
        calls += 1
        return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lookup)
    peers = [new_peer(), new_peer()]
    try:
        for pc in peers:
            pc.createDataChannel("x")
            await make_offer(pc)
    finally:
        for pc in peers:
            await close_peer(pc)
    assert calls == 1
