"""Checks on a remote SDP and its ICE candidates, before the WebRTC stack sees them.

Pure: no event loop, no socket, no aiortc. The sessions run every remote SDP (the
client's ANSWER on the server, the server's OFFER on a client) and every trickled
CANDIDATE through a :class:`CandidateGuard`, which

* refuses an SDP the stack would take but could not use (a port out of range, an address
  that is neither an IP nor an mDNS name, no ``a=fingerprint``, no ICE credentials, ...)
  with :class:`~aiosocker.SignalingError`, so the connection closes with 4400 at once
  instead of failing inside aiortc's tasks;
* counts the candidates the peer names, SDP and trickle together, and refuses the one
  past ``max_remote_candidates``: each named candidate is an address the server sends
  connectivity checks to, so an unbounded list makes it a reflector;
* drops the candidates an :class:`AddressPolicy` refuses (and mDNS ``.local`` ones, which
  aiortc would block for seconds resolving), so no check is ever sent to them.

Lines are split as aiortc splits them (``str.splitlines``), so every candidate aiortc
would read is one this module has seen.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ..errors import SignalingError

__all__ = [
    "DEFAULT_MAX_REMOTE_CANDIDATES",
    "MAX_UFRAG",
    "AddressKind",
    "AddressPolicy",
    "CandidateGuard",
    "IPAddress",
    "RemoteCandidate",
    "SdpKind",
    "address_kind",
    "check_sdp",
    "host_addresses",
    "is_proxied",
    "parse_candidate",
    "peer_address",
    "strip_mdns_candidates",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
SdpKind: TypeAlias = Literal["offer", "answer"]
AddressKind: TypeAlias = Literal[
    "public", "private", "loopback", "link-local", "reserved", "unspecified", "multicast"
]

DEFAULT_MAX_REMOTE_CANDIDATES = 16
"""Candidates a peer may name per handshake. A browser names 1-6 (one or two per network
interface, plus relays); the server checks each one, so this bounds its traffic."""

MAX_UFRAG = 32
"""Longest ICE ufrag taken (RFC 8839 allows 256). Every connectivity check the server
sends echoes the peer's ufrag; browsers and aiortc use 4-16 characters."""

NEVER: frozenset[AddressKind] = frozenset({"unspecified", "multicast"})
"""Kinds no policy allows: not one host's address (0.0.0.0 reaches this host on Linux;
a multicast or broadcast check reaches many)."""

PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-real-ip"})
"""Headers a reverse proxy adds: behind one, the WebSocket peer's address is the proxy's."""

_FINGERPRINT_ALGORITHMS = frozenset({"sha-256", "sha-384", "sha-512"})  # what aiortc checks
_SETUP = {"answer": ("active", "passive"), "offer": ("actpass", "active", "passive")}
_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_DIGITS = re.compile(r"[0-9]{1,10}")
_MDNS_NAME = re.compile(r"[A-Za-z0-9-]{1,63}\.local", re.IGNORECASE)
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")
_MEDIA = re.compile(r"^m=([^ ]+) ([0-9]+) ([A-Z/]+) (.+)$")  # aiortc's, which asserts it
_CONNECTION = re.compile(r"^IN (IP4|IP6) ([^ ]+)$")  # likewise
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


# -- addresses --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)  # a crowd's SDPs name the same few addresses
def _ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv4-mapped IPv6 address as its IPv4 one), or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=1024)
def address_kind(ip: IPAddress) -> AddressKind:
    """What kind of address ``ip`` is, for :class:`AddressPolicy`.

    ``unspecified`` covers 0.0.0.0/8 and ``::``; ``multicast`` also the IPv4 broadcast
    address; ``private`` is whatever else is not globally reachable (RFC 1918, CGNAT's
    100.64.0.0/10, IPv6 ULAs, documentation ranges); ``reserved`` is 240.0.0.0/4 and the
    like.
    """
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "unspecified"
    if ip.is_multicast or ip == _BROADCAST:
        return "multicast"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_global:
        return "public"
    if ip.is_reserved:
        return "reserved"
    return "private"


def is_proxied(headers: Mapping[str, str]) -> bool:
    """Whether the request came through a reverse proxy (``Forwarded``,
    ``X-Forwarded-For`` or ``X-Real-IP``)."""
    return any(name.lower() in PROXY_HEADERS for name in headers)


def peer_address(remote_ip: str, headers: Mapping[str, str] | None = None) -> IPAddress | None:
    """The WebSocket peer's IP address as the ``"peer"`` rule sees it: ``None`` when it
    is unknown, not an IP, or a reverse proxy's (its headers are in ``headers``).

    A client can fake a proxy header, but that only makes the rule stricter for it.
    """
    if headers is not None and is_proxied(headers):
        return None
    return _ip(remote_ip)


class AddressPolicy:
    """Which remote candidate addresses the server may send connectivity checks to.

    ``rules`` is one rule or several; an address passes if any rule allows it:

    * ``"peer"``: a public address, or one of the WebSocket peer's own kind: loopback
      for a peer on loopback (which also may name this host's own addresses), private
      for a peer on a private network. Link-local and reserved addresses, never. A peer
      whose address is unknown or behind a reverse proxy may name public addresses only.
    * ``"public"``: public addresses only.
    * ``"any"``: every address.
    * a network, ``"10.0.0.0/8"``, ``"fd00::/8"``, or one address, ``"192.0.2.7"``.

    No rule allows an unspecified (``0.0.0.0``, ``::``), multicast or broadcast address.
    With no rule at all, no named candidate is used: the peer's own checks still
    connect (the server learns its address from them, a peer-reflexive candidate).
    """

    KEYWORDS = ("peer", "public", "any")

    def __init__(self, rules: str | Sequence[str] = "peer") -> None:
        self.rules: tuple[str, ...] = (rules,) if isinstance(rules, str) else tuple(rules)
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for rule in self.rules:
            if not isinstance(rule, str):
                raise ValueError(f"remote_addresses: {rule!r} is not a string")
            if rule in self.KEYWORDS:
                continue
            try:
                self._networks.append(ipaddress.ip_network(rule))
            except ValueError as exc:
                raise ValueError(
                    f"remote_addresses: {rule!r} is neither 'peer', 'public', 'any' nor a "
                    f"network ({exc})"
                ) from None

    def __repr__(self) -> str:
        return f"AddressPolicy({list(self.rules)!r})"

    def refuses(
        self, address: str, peer: IPAddress | None = None, own: Set[IPAddress] = frozenset()
    ) -> str | None:
        """Why ``address`` is refused, or ``None`` if it is allowed. ``peer`` is the
        WebSocket peer's address (:func:`peer_address`); ``own``, this host's addresses."""
        ip = _ip(address)
        if ip is None:
            return "not an IP address"
        kind = address_kind(ip)
        if kind in NEVER:
            return f"{kind} address"
        for rule in self.rules:
            if rule == "any" or (rule in ("public", "peer") and kind == "public"):
                return None
            if rule == "peer" and peer is not None:
                peer_kind = address_kind(peer)
                if peer_kind == kind and kind in ("loopback", "private"):
                    return None
                if peer_kind == "loopback" and ip in own:
                    return None
        if any(ip in network for network in self._networks):
            return None
        if "peer" in self.rules:
            whose = "unknown" if peer is None else address_kind(peer)
            return f"{kind} address; the WebSocket peer's is {whose}"
        return f"{kind} address, outside remote_addresses"


# -- candidates -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteCandidate:
    """One ICE candidate a peer named, its fields checked."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    """An IP address, or an mDNS ``xxxx.local`` name."""
    port: int
    type: str

    @property
    def mdns(self) -> bool:
        """Whether the address is an mDNS ``.local`` name (browsers hide theirs so)."""
        return _ip(self.address) is None

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.transport} {host}:{self.port} {self.type}"


def _number(text: str, what: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise ValueError(f"{what} {text[:12]!r} not in {low}-{high}")
    return int(text)


def _candidate(value: str) -> RemoteCandidate:
    """The candidate in an ``a=candidate:`` value (``ValueError`` says what is wrong)."""
    bits = value.split()
    if len(bits) < 8:
        raise ValueError(f"{len(bits)} fields, not at least 8")
    if bits[6] != "typ":
        raise ValueError(f"field 7 is {bits[6][:12]!r}, not 'typ'")
    address = bits[4]
    if _ip(address) is None and not _MDNS_NAME.fullmatch(address):
        raise ValueError(f"address {address[:40]!r} is neither an IP nor a .local name")
    for key, text in zip(bits[8::2], bits[9::2], strict=False):  # as aiortc reads them
        if key == "rport":
            _number(text, "rport", 0, 65535)
    return RemoteCandidate(
        foundation=bits[0],
        component=_number(bits[1], "component", 1, 256),
        transport=bits[2],
        priority=_number(bits[3], "priority", 0, 2**32 - 1),
        address=address,
        port=_number(bits[5], "port", 1, 65535),
        type=bits[7],
    )


def _candidate_value(line: str) -> str:
    """``candidate:...``, ``a=candidate:...`` or the bare fields -> the bare fields."""
    return line.strip().removeprefix("a=").removeprefix("candidate:")


def _bad_candidate(line: str, value: str) -> RemoteCandidate:
    try:
        return _candidate(value)
    except ValueError as exc:
        raise SignalingError(f"bad CANDIDATE {line[:60]!r}: {exc}") from None


def parse_candidate(line: str) -> RemoteCandidate | None:
    """A trickled candidate line (``candidate:...``, with or without ``a=``); ``None``
    for an empty one (the end of candidates). Raises :class:`~aiosocker.SignalingError`
    naming what is wrong."""
    value = _candidate_value(line)
    return _bad_candidate(line, value) if value else None


def _attribute(line: str) -> tuple[str, str | None] | None:
    """``(name, value)`` of an ``a=`` line as aiortc splits it, else ``None``."""
    if not line.startswith("a="):
        return None
    name, colon, value = line[2:].partition(":")
    return name, value if colon else None


def _is_candidate(line: str) -> bool:
    attribute = _attribute(line)
    return attribute is not None and attribute[0] == "candidate"


# -- whole SDPs -------------------------------------------------------------------------


@dataclass
class _Section:
    """What one SDP section says that matters for checking it (media inherit the
    session's)."""

    media: str = ""
    ufrag: str | None = None
    pwd: str | None = None
    setup: str | None = None
    sctp_port: bool = False
    fingerprints: tuple[str, ...] = ()

    def inherit(self, media: str) -> _Section:
        return _Section(media, self.ufrag, self.pwd, self.setup, False, self.fingerprints)


def _check_section(section: _Section, kind: SdpKind) -> None:
    if not section.ufrag or not section.pwd:
        raise ValueError("no a=ice-ufrag" if not section.ufrag else "no a=ice-pwd")
    if not _ICE_CHARS.fullmatch(section.ufrag) or not 4 <= len(section.ufrag) <= MAX_UFRAG:
        raise ValueError(f"a=ice-ufrag must be 4-{MAX_UFRAG} letters, digits, + or /")
    if not _ICE_CHARS.fullmatch(section.pwd) or not 22 <= len(section.pwd) <= 256:
        raise ValueError("a=ice-pwd must be 22-256 letters, digits, + or /")
    if not section.fingerprints:
        raise ValueError("no a=fingerprint")
    if not _FINGERPRINT_ALGORITHMS & set(section.fingerprints):
        raise ValueError(f"no a=fingerprint in {'/'.join(sorted(_FINGERPRINT_ALGORITHMS))}")
    if section.setup not in _SETUP[kind]:
        allowed = " or ".join(_SETUP[kind])
        got = "none" if section.setup is None else repr(section.setup[:12])
        raise ValueError(f"a=setup must be {allowed} in an {kind}, not {got}")
    profile, _, fmt = section.media.partition(" ")
    if profile == "DTLS/SCTP":  # the legacy data channel profile: the port is the format
        _number((fmt.split() or [""])[0], "SCTP port", 1, 65535)
    elif profile in ("UDP/DTLS/SCTP", "TCP/DTLS/SCTP") and not section.sctp_port:
        raise ValueError("no a=sctp-port")


def _check_line(line: str, section: _Section) -> RemoteCandidate | None:
    """Check one line, noting in ``section`` what it says; the candidate it names."""
    if line.startswith("c=") and not _CONNECTION.match(line[2:]):
        raise ValueError(f"bad c= line {line[:40]!r}")
    attribute = _attribute(line)
    if attribute is None:
        return None
    name, value = attribute
    if name == "candidate":
        return _candidate(value or "")
    if name == "fingerprint":
        parts = (value or "").split()
        if len(parts) != 2 or not _FINGERPRINT.fullmatch(parts[1]):
            raise ValueError(f"bad a=fingerprint {(value or '')[:40]!r}")
        section.fingerprints += (parts[0].lower(),)
    elif name == "ice-ufrag":
        section.ufrag = value
    elif name == "ice-pwd":
        section.pwd = value
    elif name == "setup":
        section.setup = value
    elif name == "sctp-port":
        _number(value or "", "a=sctp-port", 1, 65535)
        section.sctp_port = True
    elif name == "max-message-size":
        _number(value or "", "a=max-message-size", 0, 2**32 - 1)
    return None


def check_sdp(sdp: str, kind: SdpKind = "answer") -> list[RemoteCandidate]:
    """Check a remote SDP for what aiortc would take but could not use; return the
    candidates it names, in order.

    Checked: every ``m=`` and ``c=`` line has aiortc's form; every media section has ICE
    credentials (a ufrag of 4-:data:`MAX_UFRAG` and a password of 22-256 ice-chars), an
    ``a=fingerprint`` aiortc can verify and an ``a=setup`` that fits ``kind``; a data
    channel section has its SCTP port (1-65535); every candidate has at least 8 fields,
    an IP or ``.local`` address and a port in 1-65535. Raises
    :class:`~aiosocker.SignalingError` (``bad answer SDP: ...``) for the first problem.
    """
    session = _Section()
    sections: list[_Section] = []
    candidates: list[RemoteCandidate] = []
    try:
        for line in sdp.splitlines():
            if line.startswith("m="):
                media = _MEDIA.match(line)
                if media is None:
                    raise ValueError(f"bad m= line {line[:40]!r}")
                sections.append(session.inherit(f"{media[3]} {media[4]}"))
            try:
                candidate = _check_line(line, sections[-1] if sections else session)
            except ValueError as exc:
                if _is_candidate(line):  # name it by its place: its text may be long
                    raise ValueError(f"candidate {len(candidates) + 1}: {exc}") from None
                raise
            if candidate is not None:
                candidates.append(candidate)
        if not sections:
            raise ValueError("no m= section")
        for section in sections:
            _check_section(section, kind)
    except ValueError as exc:
        raise SignalingError(f"bad {kind} SDP: {exc}") from None
    return candidates


def _filter_lines(sdp: str, keep: Callable[[str], bool], *, end: bool = True) -> str:
    """``sdp`` without the candidate lines ``keep`` refuses (it sees each line without
    its line end). If any went and ``end`` is false, without ``a=end-of-candidates``
    too: the peer's own checks still reveal its address (a peer-reflexive candidate),
    but aioice waits for them only while more candidates may come."""
    lines = sdp.splitlines()
    kept = [
        (line, raw)
        for line, raw in zip(lines, sdp.splitlines(keepends=True), strict=True)
        if not _is_candidate(line) or keep(line)
    ]
    if len(kept) == len(lines):
        return sdp
    return "".join(raw for line, raw in kept if end or line != "a=end-of-candidates")


def strip_mdns_candidates(sdp: str) -> str:
    """Drop ``a=candidate`` lines whose address is an mDNS ``xxxx.local`` name.

    Browsers hide local addresses behind such names; aiortc would try to resolve each
    for about a second. Without them, the browser's connectivity checks still reveal
    its real address (a peer-reflexive candidate), so opening takes ~100 ms, not ~1 s.
    """

    def keep(line: str) -> bool:
        bits = _candidate_value(line).split()
        return len(bits) < 5 or not bits[4].lower().endswith(".local")

    return _filter_lines(sdp, keep, end=True)


def host_addresses(sdp: str) -> frozenset[IPAddress]:
    """The IP addresses of the host candidates in ``sdp`` (our own offer: this host's
    addresses)."""
    found: set[IPAddress] = set()
    for line in sdp.splitlines():
        if _is_candidate(line):
            bits = _candidate_value(line).split()
            ip = _ip(bits[4]) if len(bits) >= 8 and bits[7] == "host" else None
            if ip is not None:
                found.add(ip)
    return frozenset(found)


# -- one handshake's guard --------------------------------------------------------------

Dropped: TypeAlias = Callable[[RemoteCandidate, str], None]
"""Called with each candidate an :class:`AddressPolicy` refused, and why."""


class CandidateGuard:
    """One handshake's remote candidates: how many the peer named (SDP and trickle
    together), and which ones the WebRTC stack may see.

    ``limit`` is ``max_remote_candidates``; ``peer`` the WebSocket peer's address
    (:func:`peer_address`); ``own`` this host's (:func:`host_addresses` of our offer);
    ``dropped(candidate, why)`` hears about every candidate the policy refused.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        limit: int = DEFAULT_MAX_REMOTE_CANDIDATES,
        peer: IPAddress | None = None,
        own: Iterable[IPAddress] = (),
        dropped: Dropped | None = None,
    ) -> None:
        self.policy = policy
        self.limit = limit
        self.peer = peer
        self.own = frozenset(own)
        self.named = 0
        """Candidates named so far (mDNS ones included)."""
        self._dropped = dropped

    def _check_count(self, count: int, what: str) -> None:
        if self.named + count > self.limit:
            raise SignalingError(
                f"{what} {self.named + count} ICE candidates, over "
                f"max_remote_candidates={self.limit}"
            )

    def _admit(self, candidate: RemoteCandidate) -> bool:
        """Whether ``candidate`` may reach the WebRTC stack (the policy's refusals are
        reported)."""
        if candidate.mdns:  # aiortc would block resolving it; the peer's checks do instead
            return False
        why = self.policy.refuses(candidate.address, self.peer, self.own)
        if why is not None and self._dropped is not None:
            self._dropped(candidate, why)
        return why is None

    def sdp(self, sdp: str, kind: SdpKind = "answer") -> str:
        """Check the remote SDP, count its candidates, and return it without those the
        stack must not see. :class:`~aiosocker.SignalingError` when it names too many
        candidates (checked first) or is unusable."""
        count = sum(1 for line in sdp.splitlines() if _is_candidate(line))
        self._check_count(count, f"the {kind} names")
        candidates = iter(check_sdp(sdp, kind))
        self.named += count
        return _filter_lines(sdp, lambda line: self._admit(next(candidates)), end=False)

    def trickled(self, line: str) -> RemoteCandidate | None:
        """Check and count a trickled candidate; ``None`` when it must not reach the
        stack (the end of candidates, an mDNS name, refused by the policy).
        :class:`~aiosocker.SignalingError` when it is one too many, or malformed."""
        value = _candidate_value(line)
        if not value:
            return None  # told to aiortc, it could give up before the peer's checks came
        self._check_count(1, "the peer named")
        candidate = _bad_candidate(line, value)
        self.named += 1
        return candidate if self._admit(candidate) else None
