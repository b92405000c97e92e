"""A hostile peer against the server's rtc stages, on real parts: no traffic for strangers,
and SDPs aiortc would take but cannot use refused at once.

Every test runs a real aiosocker server with ``server_stages`` on 127.0.0.1 and a client
that speaks the signaling envelope by hand (:class:`RawClient`). The "strangers" are UDP
sockets the test binds on 127.0.0.1 (:class:`UdpSinks`): a hostile ANSWER or trickled
CANDIDATEs name them as ICE candidates, and the sockets count every datagram the server
sends them. The numbers are in ``docs/guarantees.md``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

import aiosocker
from aiosocker import CloseCode
from aiosocker.rtc import DEFAULT_CHANNELS, Answer, Candidate, Offer, encode, server_stages
from aiosocker.rtc.sdp import DEFAULT_MAX_REMOTE_CANDIDATES, MAX_UFRAG

from .rtc_helpers import (
    WAIT,
    RawClient,
    RtcServers,
    UdpSinks,
    candidate_line,
    eventually,
    hostile_answer,
    interface_fixture,  # noqa: F401 (the ``interface`` fixture)
    rtc_app,
    rtc_client,
)

PROMPT = 1.0
"""Seconds within which a refusal (4400) must come: it needs no timer, only a read."""

AMPLIFICATION = 9
"""The most payload bytes the server may send to the candidates a peer names, per byte
of signaling the peer sent (READY, ANSWER, CANDIDATEs), with the default 5 s stage
timeout: 16 candidates x 4 checks x 120 B (a 32-character ufrag) = 7,680 B. The fewest
bytes that name 16 candidates: 872 B trickled as bare candidate fields (8.8 x), 936 B
in one ANSWER (8.2 x). Measured here, with 127.0.0.1 and five-digit ports: see the
test below and docs/guarantees.md."""


pytestmark = pytest.mark.usefixtures("interface")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """``await serve(setup=None, **rtc_options)``: a server (:class:`RtcServers`) with
    ``setup``, or with ``rtc_app(**rtc_options)``; returns it and the app's side (``None``
    for a setup of the test's own)."""
    servers = RtcServers()

    async def start(
        setup: aiosocker.Setup | None = None, **rtc_options: Any
    ) -> tuple[aiosocker.Server, Any]:
        side = None
        if setup is None:
            setup, side = rtc_app(**rtc_options)
        return await servers.start(setup), side

    yield start
    await servers.close()


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[[int], Any]]:
    opened: list[UdpSinks] = []

    async def open_sinks(count: int) -> UdpSinks:
        opened.append(await UdpSinks.open(count))
        return opened[-1]

    yield open_sinks
    for each in opened:
        each.close()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """ERROR records on any logger ("Task exception was never retrieved", "Fatal write
    error on datagram transport", ...), after a collection (the first is logged when the
    task is collected)."""
    caplog.set_level(logging.ERROR)

    def collect() -> list[str]:
        gc.collect()
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    return collect


async def offered(raw: RawClient) -> Offer:
    await raw.hello()
    await raw.ready()
    return await raw.receive_offer()


async def closed_promptly(raw: RawClient) -> tuple[int | None, str]:
    """The server's close code and reason, which must come within ``PROMPT`` seconds."""
    try:
        return await asyncio.wait_for(raw.expect_close(), PROMPT)
    except TimeoutError:
        pytest.fail(f"the server did not close within {PROMPT} s")


# -- too many candidates: 4400 before any reaches aiortc ---------------------------------


async def test_an_answer_naming_300_candidates_closes_4400_and_nothing_is_sent(
    serve: Any, sinks: Any, errors: Any
) -> None:
    server, srv = await serve()
    strangers = await sinks(300)
    raw = await RawClient.connect(server.url)
    offer = await offered(raw)
    lines = [candidate_line(port, index=i) for i, port in enumerate(strangers.ports)]
    await raw.send(encode(Answer(hostile_answer(offer, lines))))
    code, reason = await closed_promptly(raw)
    assert code == CloseCode.BAD_SIGNALING
    assert reason == (
        "stage 'rtc_answer': the answer names 300 ICE candidates, over max_remote_candidates=16"
    )
    await asyncio.sleep(1.0)  # a check sent would have arrived by now
    assert sum(strangers.packets) == 0
    pc = srv.pcs[0]
    assert pc.remoteDescription is None and pc.connectionState == "closed"
    assert errors() == []


async def test_trickled_candidates_past_the_bound_close_4400(
    serve: Any, sinks: Any, errors: Any
) -> None:
    server, srv = await serve()
    strangers = await sinks(300)
    raw = await RawClient.connect(server.url)
    offer = await offered(raw)
    await raw.send(encode(Answer(hostile_answer(offer))))
    for i, port in enumerate(strangers.ports):
        await raw.send(encode(Candidate(candidate_line(port, index=i), "0", 0)))
    code, reason = await closed_promptly(raw)
    assert code == CloseCode.BAD_SIGNALING
    assert reason == (
        "stage 'rtc_open': the peer named 17 ICE candidates, over max_remote_candidates=16"
    )
    await asyncio.sleep(1.0)
    # The first 16 were the peer's to name; the server stopped checking them at the close.
    assert sum(strangers.packets[16:]) == 0
    assert max(strangers.packets[:16]) <= 1
    assert srv.sessions[0].pc is None
    assert errors() == []


async def test_the_bound_is_an_option(serve: Any, sinks: Any) -> None:
    server, _ = await serve(max_remote_candidates=2)
    strangers = await sinks(3)
    raw = await RawClient.connect(server.url)
    offer = await offered(raw)
    lines = [candidate_line(port) for port in strangers.ports]
    await raw.send(encode(Answer(hostile_answer(offer, lines))))
    code, reason = await closed_promptly(raw)
    assert code == CloseCode.BAD_SIGNALING
    assert reason.endswith("the answer names 3 ICE candidates, over max_remote_candidates=2")
    assert sum(strangers.packets) == 0


# -- within the bound: a small multiple of what the peer sent ---------------------------


@pytest.mark.parametrize("how", ["answer", "trickle"])
async def test_a_hostile_peer_within_the_bound_gets_a_small_multiple(
    serve: Any, sinks: Any, errors: Any, how: str
) -> None:
    """16 candidates on loopback (the default policy lets a loopback peer name loopback
    addresses), the longest ufrag taken (every check echoes it), the fewest bytes around
    them, nothing behind them: the server checks each until the rtc_open stage times out
    (5 s, the default)."""
    server, srv = await serve()
    strangers = await sinks(DEFAULT_MAX_REMOTE_CANDIDATES)
    raw = await RawClient.connect(server.url)
    await raw.hello()  # the app's own stage: not signaling
    raw.sent = 0
    await raw.ready()
    offer = await raw.receive_offer()
    lines = [candidate_line(port, index=i) for i, port in enumerate(strangers.ports)]
    ufrag = "u" * MAX_UFRAG
    if how == "answer":
        await raw.send(encode(Answer(hostile_answer(offer, lines, ufrag=ufrag, minimal=True))))
    else:
        await raw.send(encode(Answer(hostile_answer(offer, ufrag=ufrag, minimal=True))))
        for line in lines:  # the bare fields: the fewest bytes the envelope takes
            await raw.send(encode(Candidate(line.removeprefix("candidate:"))))
    await asyncio.wait_for(raw.ws.wait_closed(), 5.0 + WAIT)
    assert (raw.ws.close_code, raw.ws.close_reason) == (
        CloseCode.STAGE_TIMEOUT,
        "stage 'rtc_open' timed out after 5 s",
    )
    await asyncio.sleep(0.6)  # anything still in flight
    ratio = strangers.bytes / raw.sent
    numbers = (
        f"signaling sent {raw.sent} B; to the {len(strangers.ports)} candidates: "
        f"{sum(strangers.packets)} datagrams, {strangers.bytes} B (x{ratio:.1f})"
    )
    assert all(1 <= n <= 4 for n in strangers.packets), (strangers.packets, numbers)  # at 0,
    assert ratio <= AMPLIFICATION, numbers  # 0.5, 1.5 and 3.5 s: aioice's retransmissions
    assert srv.sessions[0].dropped_candidates == 0
    assert errors() == []


# -- the address policy: candidates outside it are never checked --------------------------


@pytest.mark.parametrize(
    ("options", "headers"),
    [
        ({"remote_addresses": "public"}, None),
        # Behind a reverse proxy every peer looks like it is on loopback; the default
        # rule then takes the peer's address as unknown: public candidates only.
        ({}, {"X-Forwarded-For": "198.51.100.7"}),
        ({"remote_addresses": []}, None),
    ],
    ids=["public", "proxied-peer", "no-rule"],
)
async def test_candidates_outside_the_policy_are_dropped_and_never_checked(
    serve: Any,
    sinks: Any,
    errors: Any,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    headers: dict[str, str] | None,
) -> None:
    caplog.set_level(logging.INFO, logger="aiosocker.rtc")
    server, srv = await serve(**options)
    strangers = await sinks(12)
    raw = await RawClient.connect(server.url, headers)
    try:
        offer = await offered(raw)
        lines = [candidate_line(port, index=i) for i, port in enumerate(strangers.ports)]
        # No end-of-candidates: aiortc would take (and check) the trickled six too.
        await raw.send(encode(Answer(hostile_answer(offer, lines[:6], end=False))))
        for line in lines[6:]:
            await raw.send(encode(Candidate(line, "0", 0)))
        await asyncio.sleep(1.0)  # a check sent would have arrived by now
        assert sum(strangers.packets) == 0, strangers.packets
        session = srv.sessions[0]
        assert session.dropped_candidates == 12
        assert session.pc is not None
        assert session.pc.sctp.transport.transport.getRemoteCandidates() == []
        drops = [r for r in caplog.records if "dropped the remote candidate" in r.getMessage()]
        assert len(drops) == 1, "logged once per connection; the count tells the rest"
        assert re.search(
            r"dropped the remote candidate udp 127\.0\.0\.1:\d+ host \(loopback",
            drops[0].getMessage(),
        )
        assert not srv.conns[0].closed
    finally:
        await raw.aclose()
    assert errors() == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("everyone", r"'everyone' is neither 'peer', 'public', 'any' nor a network"),
        (["10.0.0.1/8"], "has host bits set"),
    ],
)
async def test_a_bad_policy_or_bound_is_refused_in_setup(
    serve: Any, rules: Any, message: str
) -> None:
    raised: list[BaseException] = []

    def setup(conn: aiosocker.Connection) -> None:
        for options in ({"remote_addresses": rules}, {"max_remote_candidates": -1}):
            try:
                server_stages(conn, **options)
            except ValueError as exc:
                raised.append(exc)
        conn.add(lambda m: False, name="final")

    server, _ = await serve(setup)
    async with aiosocker.connect(server.url):
        await eventually(lambda: len(raised) == 2, what="both refusals")
    assert re.search(message, str(raised[0]))
    assert str(raised[1]) == "max_remote_candidates must be an int >= 0, not -1"


# -- SDPs aiortc would take but cannot use: 4400 at once, no tracebacks -------------------


def swap(pattern: str, replacement: str) -> Callable[[str], str]:
    return lambda sdp: re.sub(pattern, replacement, sdp, flags=re.MULTILINE)


def drop(prefix: str) -> Callable[[str], str]:
    return lambda sdp: "".join(
        line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix)
    )


CANDIDATE = r"^(a=candidate:\S+ \d+ udp \d+) (\S+) (\d+)"

BAD_ANSWERS = {
    # Each of these went to aiortc, failed inside its tasks ("Fatal write error on datagram
    # transport", "Task exception was never retrieved") and ended with 4408 after 5 s.
    "port-99999": (swap(CANDIDATE, r"\1 \2 99999"), r"candidate 1: port '99999' not in 1-65535"),
    "port-0": (swap(CANDIDATE, r"\1 \2 0"), r"candidate 1: port '0' not in 1-65535"),
    "bad-address": (
        swap(CANDIDATE, r"\1 999.1.1.1 \3"),
        r"candidate 1: address '999.1.1.1' is neither an IP nor a .local name",
    ),
    "no-fingerprint": (drop("a=fingerprint"), r"no a=fingerprint$"),
    "md5-fingerprint": (swap(r"^a=fingerprint:\S+", "a=fingerprint:md5"), r"no a=fingerprint in"),
    "sctp-port-99999": (swap(r"^a=sctp-port:\d+", "a=sctp-port:99999"), r"a=sctp-port '99999'"),
    "no-sctp-port": (drop("a=sctp-port"), r"no a=sctp-port$"),
    "ufrag-with-colon": (swap(r"^a=ice-ufrag:\S+", "a=ice-ufrag:ab:cd"), r"a=ice-ufrag must be"),
    "short-pwd": (swap(r"^a=ice-pwd:\S+", "a=ice-pwd:abc"), r"a=ice-pwd must be 22-256"),
    "no-ufrag": (drop("a=ice-ufrag"), r"no a=ice-ufrag$"),
    # These aiortc refused itself, with a bare AssertionError (reason: "... rejected: ").
    "short-candidate": (
        swap(CANDIDATE + r" typ host", r"\1 \2 \3"),
        r"candidate 1: 6 fields, not at least 8",
    ),
    "bad-c-line": (swap(r"^c=IN IP4 \S+", "c=IN IP4"), r"bad c= line 'c=IN IP4'"),
    "no-setup": (drop("a=setup"), r"a=setup must be active or passive in an answer, not none"),
}


@pytest.mark.parametrize("name", list(BAD_ANSWERS))
async def test_an_unusable_answer_closes_4400_at_once_with_a_reason(
    serve: Any, errors: Any, name: str
) -> None:
    mutate, problem = BAD_ANSWERS[name]
    server, srv = await serve()
    raw = await RawClient.connect(server.url)
    try:
        offer = await offered(raw)
        pc = raw.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = mutate(pc.localDescription.sdp)
        assert sdp != pc.localDescription.sdp, "the mutation changed nothing"
        await raw.send(encode(Answer(sdp)))
        code, reason = await closed_promptly(raw)
        assert code == CloseCode.BAD_SIGNALING
        assert re.search("^stage 'rtc_answer': bad answer SDP: " + problem, reason), reason
        await eventually(lambda: not server.connections, what="the server forgets it")
        assert srv.pcs[0].remoteDescription is None  # aiortc never saw it
    finally:
        await raw.close_pc()
    await asyncio.sleep(0.3)
    assert errors() == []


async def test_an_sdp_aiortc_rejects_bare_still_names_the_cause(serve: Any, errors: Any) -> None:
    """What passes the checks but aiortc refuses with a bare ``AssertionError`` (a payload
    type over 255 in an audio section) names the exception's type."""
    server, _ = await serve()
    raw = await RawClient.connect(server.url)
    offer = await offered(raw)
    sdp = hostile_answer(offer)
    creds = "".join(line + "\r\n" for line in sdp.splitlines()[8:12])
    await raw.send(encode(Answer(sdp + "m=audio 9 UDP/TLS/RTP/SAVPF 300\r\n" + creds)))
    code, reason = await closed_promptly(raw)
    assert code == CloseCode.BAD_SIGNALING
    assert reason == "stage 'rtc_answer': the answer SDP was rejected: AssertionError"
    assert errors() == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (candidate_line(99999), r"port '99999' not in 1-65535"),
        ("candidate:1 1 udp 1 bad..address 9 typ host", r"address 'bad..address' is neither"),
    ],
    ids=["port-99999", "bad-address"],
)
async def test_an_unusable_trickled_candidate_closes_4400(
    serve: Any, errors: Any, line: str, problem: str
) -> None:
    server, _ = await serve()
    raw = await RawClient.connect(server.url)
    offer = await offered(raw)
    await raw.send(encode(Answer(hostile_answer(offer))))
    await raw.send(encode(Candidate(line, "0", 0)))
    code, reason = await closed_promptly(raw)
    assert code == CloseCode.BAD_SIGNALING
    assert re.search(r"^stage 'rtc_open': bad CANDIDATE '.*': " + problem, reason), reason
    assert errors() == []


# -- the client checks the server's offer too ---------------------------------------------


async def test_the_client_refuses_an_offer_naming_too_many_candidates(serve: Any) -> None:
    """A hostile server cannot make a Python client its reflector either."""
    template: list[str] = []

    async def setup(conn: aiosocker.Connection) -> None:
        @conn.stage()
        async def hello(message: bytes) -> bool:
            await conn.send(b"scene")
            return True

        @conn.stage()
        async def offer(message: bytes) -> bool:  # READY: answer with a hostile offer
            lines = [candidate_line(port) for port in range(20000, 20300)]
            sdp = template[0] + "".join(f"a={line}\r\n" for line in lines)
            await conn.send(encode(Offer(sdp, DEFAULT_CHANNELS)))
            return True

        conn.add(lambda m: False, name="final")

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("game")
    await pc.setLocalDescription(await pc.createOffer())
    template.append(drop("a=candidate")(pc.localDescription.sdp))
    await pc.close()
    server, _ = await serve(setup)
    async with rtc_client(server.url, wait_open=False) as cli:
        await asyncio.wait_for(cli.conn.wait_closed(), WAIT)
        assert cli.conn.close_code == CloseCode.BAD_SIGNALING
        assert cli.conn.close_reason == (
            "stage 'rtc_offer': the offer names 300 ICE candidates, over max_remote_candidates=16"
        )
        assert cli.session.pc is None  # refused before a peer connection was made
