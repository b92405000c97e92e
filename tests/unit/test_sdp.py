"""The pure checks on remote SDPs and candidates (``aiosocker.rtc.sdp``): address kinds,
the address policy, candidate and SDP validation, the per-handshake guard."""

from __future__ import annotations

import ast
import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiosocker import SignalingError
from aiosocker.rtc import sdp as sdp_module
from aiosocker.rtc.sdp import (
    DEFAULT_MAX_REMOTE_CANDIDATES,
    MAX_UFRAG,
    AddressPolicy,
    CandidateGuard,
    RemoteCandidate,
    address_kind,
    check_sdp,
    host_addresses,
    is_proxied,
    parse_candidate,
    peer_address,
    strip_mdns_candidates,
)

ip = ipaddress.ip_address
FINGERPRINT = "sha-256 " + ":".join(["AB"] * 32)
PWD = "3nS0tW7e8q9r0t1y2u3i4o5p"


def candidate(address: str = "192.0.2.7", port: int = 50000, kind: str = "host") -> str:
    return f"candidate:1 1 udp 2122260223 {address} {port} typ {kind}"


def answer(*candidates: str, session: str = "", media: str = "", end: bool = True) -> str:
    """A data-channel answer as a browser sends it; ``session``/``media`` replace the
    lines of that level that carry credentials, fingerprint and setup."""
    media_lines = media or (
        f"a=ice-ufrag:Xy1z\r\na=ice-pwd:{PWD}\r\na=fingerprint:{FINGERPRINT}\r\na=setup:active\r\n"
    )
    return (
        "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        + session
        + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        + "".join(f"a={line}\r\n" for line in candidates)
        + ("a=end-of-candidates\r\n" if end else "")
        + media_lines
        + "a=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )


GOOD = answer(candidate(), candidate("fd00::1", 50001), candidate("3c4a2b9e-5f7d.local", 54321))


# -- purity ----------------------------------------------------------------------------


def test_the_module_is_pure() -> None:
    tree = ast.parse(Path(sdp_module.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in imported if n.split(".")[0] in {"asyncio", "aiortc", "aioice", "socket"}}


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.20", "private"),
        ("100.64.0.1", "private"),  # CGNAT's shared space
        ("192.0.2.2", "private"),  # documentation range: not globally reachable
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "multicast"),
    ],
)
def test_address_kinds(address: str, kind: str) -> None:
    assert address_kind(ip(address)) == kind


def test_peer_address_maps_ipv4_in_ipv6_and_knows_proxies() -> None:
    assert peer_address("127.0.0.1") == ip("127.0.0.1")
    assert peer_address("::ffff:127.0.0.1") == ip("127.0.0.1")
    assert peer_address("::1", {}) == ip("::1")
    assert peer_address("") is None
    assert peer_address("/run/app.sock") is None
    for header in ("Forwarded", "X-Forwarded-For", "x-real-ip"):
        assert is_proxied({header: "for=203.0.113.7"})
        assert peer_address("127.0.0.1", {header: "203.0.113.7"}) is None
    assert not is_proxied({"Origin": "http://127.0.0.1"})
    assert peer_address("10.0.0.5", {"Origin": "x"}) == ip("10.0.0.5")


# -- the address policy ----------------------------------------------------------------

LOOPBACK, PRIVATE, PUBLIC = ip("127.0.0.1"), ip("192.168.1.20"), ip("93.184.216.34")
OWN = frozenset({ip("192.0.2.2")})


@pytest.mark.parametrize(
    ("address", "peer", "allowed"),
    [
        ("8.8.8.8", None, True),  # public: always
        ("8.8.8.8", LOOPBACK, True),
        ("127.0.0.1", LOOPBACK, True),  # the peer's own kind
        ("::1", LOOPBACK, True),
        ("192.168.1.30", PRIVATE, True),
        ("fd00::1", PRIVATE, True),
        ("192.0.2.2", LOOPBACK, True),  # a peer on this host may name this host's addresses
        ("192.0.2.3", LOOPBACK, False),  # ... but no other private one
        ("192.0.2.2", PRIVATE, True),  # (private anyway)
        ("192.0.2.2", PUBLIC, False),
        ("127.0.0.1", PRIVATE, False),
        ("127.0.0.1", PUBLIC, False),
        ("10.0.0.1", PUBLIC, False),
        ("10.0.0.1", None, False),  # unknown or proxied peer: public only
        ("127.0.0.1", None, False),
        ("169.254.1.1", ip("169.254.7.7"), False),  # link-local: never by "peer"
        ("240.0.0.1", ip("240.0.0.2"), False),  # reserved: likewise
        ("0.0.0.0", LOOPBACK, False),
        ("224.0.0.1", PUBLIC, False),
    ],
)
def test_peer_rule(address: str, peer: ipaddress.IPv4Address | None, allowed: bool) -> None:
    refused = AddressPolicy().refuses(address, peer, OWN)
    assert (refused is None) is allowed, refused


def test_refusals_say_why() -> None:
    peer = AddressPolicy("peer")
    assert peer.refuses("10.0.0.1", PUBLIC) == "private address; the WebSocket peer's is public"
    assert peer.refuses("10.0.0.1") == "private address; the WebSocket peer's is unknown"
    assert peer.refuses("x.local") == "not an IP address"
    assert AddressPolicy("any").refuses("0.0.0.0") == "unspecified address"
    assert AddressPolicy("any").refuses("ff02::1") == "multicast address"
    assert AddressPolicy("public").refuses("::1") == "loopback address, outside remote_addresses"


def test_other_rules() -> None:
    anything = AddressPolicy("any")
    for address in ("127.0.0.1", "169.254.1.1", "10.0.0.1", "240.0.0.1", "8.8.8.8"):
        assert anything.refuses(address) is None
    public = AddressPolicy("public")
    assert public.refuses("8.8.8.8", LOOPBACK) is None
    assert public.refuses("127.0.0.1", LOOPBACK) is not None
    nets = AddressPolicy(["10.0.0.0/8", "fe80::/10", "192.0.2.7"])
    assert nets.rules == ("10.0.0.0/8", "fe80::/10", "192.0.2.7")
    for address in ("10.9.8.7", "fe80::1", "192.0.2.7", "::ffff:10.0.0.1"):
        assert nets.refuses(address) is None, address
    for address in ("192.0.2.8", "8.8.8.8", "11.0.0.1"):
        assert nets.refuses(address) is not None, address
    both = AddressPolicy(["peer", "169.254.0.0/16"])
    assert both.refuses("169.254.1.1", LOOPBACK) is None
    assert both.refuses("127.0.0.1", LOOPBACK) is None
    assert both.refuses("10.0.0.1", LOOPBACK) is not None
    nothing = AddressPolicy([])  # no named candidate is used: the peer's checks still are
    assert nothing.refuses("8.8.8.8", PUBLIC) == "public address, outside remote_addresses"
    assert repr(nets) == "AddressPolicy(['10.0.0.0/8', 'fe80::/10', '192.0.2.7'])"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("everyone", r"'everyone' is neither 'peer', 'public', 'any' nor a network"),
        (["peer", "10.0.0.1/8"], r"'10.0.0.1/8' is neither .* \(10.0.0.1/8 has host bits set\)"),
        ([8], r"remote_addresses: 8 is not a string"),
    ],
)
def test_bad_rules(rules: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AddressPolicy(rules)  # type: ignore[arg-type]


# -- candidates ------------------------------------------------------------------------


def test_parse_candidate_forms() -> None:
    expected = RemoteCandidate("1", 1, "udp", 2122260223, "192.0.2.7", 50000, "host")
    assert parse_candidate(candidate()) == expected
    assert parse_candidate("a=" + candidate()) == expected
    assert parse_candidate("  " + candidate().removeprefix("candidate:") + "\r\n") == expected
    assert parse_candidate("") is None and parse_candidate("candidate:") is None
    chrome = (
        "candidate:842163049 1 UDP 1686052607 203.0.113.7 54321 typ srflx raddr 0.0.0.0"
        " rport 0 generation 0 ufrag Xy1z network-id 1 network-cost 10 odd"
    )
    parsed = parse_candidate(chrome)
    assert parsed is not None and (parsed.transport, parsed.type) == ("UDP", "srflx")
    assert not parsed.mdns and str(parsed) == "UDP 203.0.113.7:54321 srflx"
    v6 = parse_candidate(candidate("fd00::1", 9, "host") + " tcptype active")
    assert v6 is not None and str(v6) == "udp [fd00::1]:9 host"
    assert parse_candidate(candidate() + " rport") is not None  # a key with no value: ignored
    mdns = parse_candidate(candidate("3C4A2B9E-5f7d.LOCAL"))
    assert mdns is not None and mdns.mdns


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("candidate:garbage", "1 fields, not at least 8"),
        ("candidate:1 1 udp 1 10.0.0.1 9 host x", "field 7 is 'host', not 'typ'"),
        (candidate("999.1.1.1"), "address '999.1.1.1' is neither an IP nor a .local name"),
        (candidate("host.localdomain"), "address 'host.localdomain' is neither"),
        (candidate("a.b.local"), "address 'a.b.local' is neither"),  # one label, as aioice
        (candidate(port=99999), "port '99999' not in 1-65535"),
        (candidate(port=0), "port '0' not in 1-65535"),
        ("candidate:1 1 udp 1 10.0.0.1 +5 typ host", r"port '\+5' not in 1-65535"),
        ("candidate:1 0 udp 1 10.0.0.1 9 typ host", "component '0' not in 1-256"),
        ("candidate:1 x udp 1 10.0.0.1 9 typ host", "component 'x' not in 1-256"),
        ("candidate:1 1 udp 4294967296 10.0.0.1 9 typ host", "priority '4294967296' not in"),
        (candidate() + " rport 70000", "rport '70000' not in 0-65535"),
    ],
)
def test_bad_trickled_candidates(line: str, problem: str) -> None:
    with pytest.raises(SignalingError, match=r"^bad CANDIDATE '.*': " + problem):
        parse_candidate(line)


# -- whole SDPs ------------------------------------------------------------------------


def test_a_good_answer_and_its_candidates() -> None:
    found = check_sdp(GOOD)
    assert [c.address for c in found] == ["192.0.2.7", "fd00::1", "3c4a2b9e-5f7d.local"]
    assert check_sdp(GOOD.replace("\r\n", "\n")) == found
    # Session-level credentials, fingerprint and setup hold for every media section.
    session = f"a=ice-ufrag:Xy1z\r\na=ice-pwd:{PWD}\r\na=fingerprint:{FINGERPRINT}\r\n"
    assert check_sdp(answer(session=session + "a=setup:passive\r\n", media="a=x\r\n")) == []
    # A media section may override them (here the session's setup is wrong for an answer).
    assert check_sdp(answer(session="a=setup:actpass\r\n")) == []
    # An offer may say actpass; the legacy DTLS/SCTP profile carries the port as format.
    offer = answer(media=session + "a=setup:actpass\r\n").replace(
        "UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000"
    )
    assert check_sdp(offer, "offer") == []
    # Media sections other than data channels need no SCTP port.
    audio = GOOD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + session + "a=setup:active\r\n"
    assert len(check_sdp(audio)) == 3
    # Candidates at session level are checked and counted too (aiortc ignores them).
    assert len(check_sdp(answer(session=f"a={candidate()}\r\n"))) == 1


def without(text: str, prefix: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(prefix))


@pytest.mark.parametrize(
    ("sdp", "problem"),
    [
        ("v=0 garbage", "no m= section"),
        (GOOD.replace("m=application 9", "m=application x"), "bad m= line 'm=application x"),
        (GOOD.replace("c=IN IP4 0.0.0.0", "c=IN IP4"), "bad c= line 'c=IN IP4'"),
        (without(GOOD, "a=ice-ufrag"), "no a=ice-ufrag"),
        (without(GOOD, "a=ice-pwd"), "no a=ice-pwd"),
        (GOOD.replace("a=ice-ufrag:Xy1z", "a=ice-ufrag:a:b"), "a=ice-ufrag must be 4-32"),
        (GOOD.replace("a=ice-ufrag:Xy1z", "a=ice-ufrag:Xy1"), "a=ice-ufrag must be 4-32"),
        (GOOD.replace("Xy1z", "x" * (MAX_UFRAG + 1)), "a=ice-ufrag must be 4-32"),
        (GOOD.replace(PWD, "abc"), "a=ice-pwd must be 22-256"),
        (GOOD.replace(PWD, PWD + " "), "a=ice-pwd must be 22-256"),
        (without(GOOD, "a=fingerprint"), "no a=fingerprint$"),
        (GOOD.replace("sha-256", "md5"), "no a=fingerprint in sha-256/sha-384/sha-512"),
        (GOOD.replace(":AB:AB\r", ":AB:XY\r"), "bad a=fingerprint 'sha-256 AB:"),
        (GOOD.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 x "), "bad a=fingerp"),
        (GOOD.replace("a=fingerprint:" + FINGERPRINT, "a=fingerprint"), "bad a=fingerprint ''"),
        (without(GOOD, "a=setup"), "a=setup must be active or passive in an answer, not none"),
        (
            GOOD.replace("a=setup:active", "a=setup:actpass"),
            "a=setup must be active or passive in an answer, not 'actpass'",
        ),
        (without(GOOD, "a=sctp-port"), "no a=sctp-port"),
        (GOOD.replace("a=sctp-port:5000", "a=sctp-port:99999"), "a=sctp-port '99999' not in"),
        (GOOD.replace("a=sctp-port:5000", "a=sctp-port"), "a=sctp-port '' not in 1-65535"),
        (GOOD.replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 0"), "SCTP port '0'"),
        (GOOD.replace("UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP  "), "SCTP port ''"),
        (GOOD.replace("max-message-size:262144", "max-message-size:-1"), "a=max-message-size"),
        (answer(candidate(), candidate(port=99999)), r"candidate 2: port '99999' not in"),
        (answer("candidate"), "candidate 1: 0 fields, not at least 8"),
        (answer(candidate("999.1.1.1")), "candidate 1: address '999.1.1.1' is neither"),
    ],
)
def test_unusable_sdps(sdp: str, problem: str) -> None:
    with pytest.raises(SignalingError, match=r"^bad answer SDP: " + problem):
        check_sdp(sdp)


def test_offers_are_checked_as_offers() -> None:
    with pytest.raises(SignalingError, match=r"^bad offer SDP: a=setup must be actpass or"):
        check_sdp(GOOD.replace("a=setup:active", "a=setup:holdconn"), "offer")
    assert check_sdp(GOOD, "offer")  # active is fine in an offer too


@given(
    st.text(alphabet=st.sampled_from("am=c:candidate 0123456789.\r\n\u2028udp typ"), max_size=200)
)
def test_only_signaling_errors_come_out(text: str) -> None:
    with contextlib.suppress(SignalingError):
        check_sdp(text)


def test_strip_mdns_candidates() -> None:
    stripped = strip_mdns_candidates(GOOD)
    assert ".local" not in stripped and "a=end-of-candidates" in stripped  # only the line
    assert stripped == GOOD.replace(f"a={candidate('3c4a2b9e-5f7d.local', 54321)}\r\n", "")
    plain = answer(candidate(), "candidate:1 1 udp")  # too short to name an address: kept
    assert strip_mdns_candidates(plain) is plain


def test_host_addresses_of_our_offer() -> None:
    offer = answer(
        candidate("192.0.2.2"),
        candidate("fd00::2"),
        candidate("203.0.113.9", kind="srflx"),
        candidate("abc.local"),
        "candidate:1 1 udp",
    )
    assert host_addresses(offer) == {ip("192.0.2.2"), ip("fd00::2")}
    assert host_addresses("") == frozenset()


# -- the guard -------------------------------------------------------------------------


def guard_with(
    policy: str = "peer", limit: int = 4, peer: str = "127.0.0.1"
) -> tuple[CandidateGuard, list[tuple[str, str]]]:
    dropped: list[tuple[str, str]] = []
    guard = CandidateGuard(
        AddressPolicy(policy),
        limit=limit,
        peer=ip(peer),
        own=OWN,
        dropped=lambda c, why: dropped.append((c.address, why)),
    )
    return guard, dropped


def test_the_guard_filters_an_answer_and_counts_its_candidates() -> None:
    guard, dropped = guard_with()
    sdp = answer(
        candidate("127.0.0.1", 5000),
        candidate("192.0.2.2", 5001),  # this host's own: kept for a loopback peer
        candidate("10.0.0.9", 5002),  # another private address: dropped
        candidate("a1b2.local", 5003),  # mDNS: dropped quietly, as ever
    )
    taken = guard.sdp(sdp)
    assert guard.named == 4
    assert dropped == [("10.0.0.9", "private address; the WebSocket peer's is loopback")]
    assert "127.0.0.1 5000" in taken and "192.0.2.2 5001" in taken
    assert "10.0.0.9" not in taken and ".local" not in taken
    # Once a candidate went, so did a=end-of-candidates: the peer's checks still count.
    assert "a=end-of-candidates" not in taken
    assert taken == without(
        without(
            without(sdp, "a=candidate:1 1 udp 2122260223 10."),
            "a=candidate:1 1 udp 2122260223 a1b2",
        ),
        "a=end-of-c",
    )
    # Nothing to drop: the SDP goes through as it came, end-of-candidates included.
    clean = answer(candidate("127.0.0.1"))
    assert guard_with()[0].sdp(clean) is clean


def test_the_guard_refuses_too_many_before_anything_else() -> None:
    guard, _ = guard_with(limit=2)
    bad_and_many = answer(candidate(port=1), candidate(port=2), candidate(port=99999))
    with pytest.raises(
        SignalingError,
        match=r"^the answer names 3 ICE candidates, over "
        r"max_remote_candidates=2$",
    ):
        guard.sdp(bad_and_many)
    assert guard.named == 0
    with pytest.raises(SignalingError, match=r"^bad offer SDP: candidate 1: port '0'"):
        guard.sdp(answer(candidate(port=0)), "offer")
    assert guard.named == 0


def test_the_guard_counts_trickle_and_sdp_together() -> None:
    guard, dropped = guard_with(limit=4)
    guard.sdp(answer(candidate("127.0.0.1", 1), candidate("127.0.0.1", 2)))
    assert guard.trickled("") is None and guard.trickled("candidate:") is None  # the end
    assert guard.named == 2
    assert guard.trickled(candidate("b2c3.local")) is None  # mDNS: counted, never used
    taken = guard.trickled("a=" + candidate("127.0.0.1", 3))
    assert taken is not None and taken.port == 3
    assert guard.named == 4 and dropped == []
    with pytest.raises(
        SignalingError,
        match=r"^the peer named 5 ICE candidates, over "
        r"max_remote_candidates=4$",
    ):
        guard.trickled(candidate("127.0.0.1", 5))
    assert guard.named == 4


def test_the_guard_drops_trickled_candidates_outside_the_policy() -> None:
    guard, dropped = guard_with("public", peer="93.184.216.34")
    assert guard.trickled(candidate("127.0.0.1")) is None
    assert dropped == [("127.0.0.1", "loopback address, outside remote_addresses")]
    assert guard.trickled(candidate("8.8.8.8")) is not None
    with pytest.raises(SignalingError, match=r"^bad CANDIDATE 'candidate:garbage': 1 fields"):
        guard.trickled("candidate:garbage")
    assert guard.named == 2
    # Without a listener, refusals are simply not reported.
    quiet = CandidateGuard(AddressPolicy("public"))
    assert quiet.limit == DEFAULT_MAX_REMOTE_CANDIDATES == 16
    assert quiet.trickled(candidate("10.0.0.1")) is None
    assert quiet.sdp(answer(candidate("10.0.0.1"))).count("a=candidate") == 0


def test_line_ends_are_split_as_aiortc_splits_them() -> None:
    # aiortc splits on every str.splitlines() boundary: a candidate hidden behind U+2028
    # is a line of its own to it, so it is one to the guard too.
    hidden = GOOD.replace("a=mid:0\r\n", f"a=mid:0\u2028a={candidate('10.0.0.1')}\r\n")
    assert len(check_sdp(hidden)) == 4
    guard, dropped = guard_with()
    assert "10.0.0.1" not in guard.sdp(hidden) and ("10.0.0.1" in dict(dropped))
