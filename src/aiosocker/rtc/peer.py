"""The seam to the WebRTC library (aiortc today).

Everything socker asks of a WebRTC stack goes through this module: make a peer
connection with the user's ICE servers (never a public STUN server unasked), create
channels from :class:`ChannelSpec`, make and take offers and answers. aiortc is
imported lazily: importing it costs ~0.3 s and ~36 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

from ..errors import SignalingError
from .envelope import ChannelSpec, IceServer
from .reuse import cached_addresses, new_peer_connection
from .sdp import parse_candidate as check_candidate
from .sdp import strip_mdns_candidates

if TYPE_CHECKING:
    from aiortc import RTCDataChannel, RTCIceCandidate, RTCPeerConnection

__all__ = [
    "IceServer",
    "IceTransportPolicy",
    "accept_offer",
    "add_candidate",
    "answer_offer",
    "close_peer",
    "create_channel",
    "make_offer",
    "new_peer",
    "parse_candidate",
    "strip_mdns_candidates",
]


IceTransportPolicy: TypeAlias = Literal["all", "relay"]
"""``"all"`` candidates, or ``"relay"``: TURN relay candidates only (WebRTC's
``iceTransportPolicy``)."""

ICE_TRANSPORT_POLICIES: tuple[IceTransportPolicy, ...] = ("all", "relay")


def new_peer(
    ice_servers: Sequence[IceServer] = (), policy: IceTransportPolicy = "all"
) -> RTCPeerConnection:
    """A peer connection using exactly ``ice_servers`` (aiortc's default would ask a
    public STUN server); with ``policy="relay"`` it gathers and uses relay candidates
    only (aiortc uses the first usable TURN URL of the list)."""
    import aiortc
    from aiortc import RTCConfiguration, RTCIceServer

    servers = [
        RTCIceServer(
            urls=s.urls if isinstance(s.urls, str) else list(s.urls),
            username=s.username,
            credential=s.credential,
        )
        for s in ice_servers
    ]
    if policy == "all":
        return new_peer_connection(RTCConfiguration(iceServers=servers))
    policies = getattr(aiortc, "RTCIceTransportPolicy", None)
    if policies is None:  # pragma: no cover (older aiortc)
        raise RuntimeError(f"ice_transport_policy={policy!r} needs a newer aiortc")
    return new_peer_connection(
        RTCConfiguration(iceServers=servers, iceTransportPolicy=policies.RELAY)
    )


_warm = False

WARM_UP_TIMEOUT = 5.0
"""The most :func:`preload`'s warm-up open may take before it gives up (quietly)."""


async def preload() -> None:
    """Import aiortc and warm it up now, so the first handshake does not pay for it.

    The first peer connection of a process costs ~120 ms more than the next ones:
    importing aiortc and its crypto, the first certificate, and the first run of every
    code path of ICE, DTLS, SCTP and the channel protocol. Await this once when the
    server starts (``aiosocker demo`` does): the import runs in a thread, then two peer
    connections in this process open a channel to each other over this host's address
    and close (~40 ms). Safe to call again.
    """
    global _warm
    if _warm:
        return
    await asyncio.to_thread(__import__, "aiortc")
    await _warm_up()
    _warm = True


async def _warm_up() -> None:
    offerer, answerer = new_peer(), new_peer()
    try:
        channel = create_channel(offerer, ChannelSpec("warm-up", ordered=True))
        opened = asyncio.Event()
        channel.on("open", opened.set)
        offer = await make_offer(offerer)
        if "a=candidate:" not in offer:
            return  # no address to meet on (aioice never offers loopback): offer only
        await answer_offer(offerer, await accept_offer(answerer, offer))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(opened.wait(), WARM_UP_TIMEOUT)
    finally:
        await close_peer(offerer)
        await close_peer(answerer)


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close ``pc`` and leave no task behind.

    Works around a race in aioice 0.13: closed while its connectivity checks complete, an
    ICE connection starts consent checks *after* ``close()``, and they never end (a task
    waking every ~5 s, forever). So wait, briefly, for ICE to finish starting, then stop
    them.
    """
    await pc.close()
    sctp = pc.sctp
    ice = sctp.transport.transport if sctp is not None else None
    connection = getattr(ice, "_connection", None)  # aioice.Connection
    started = getattr(ice, "_RTCIceTransport__start", None)  # set once connect() returned
    if connection is None or not isinstance(started, asyncio.Event):
        return
    try:
        await asyncio.wait_for(started.wait(), 0.5)
    except TimeoutError:
        return
    task = getattr(connection, "_query_consent_task", None)
    if isinstance(task, asyncio.Task) and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_channel(pc: RTCPeerConnection, spec: ChannelSpec) -> RTCDataChannel:
    """Create the channel ``spec`` describes on ``pc``."""
    return pc.createDataChannel(spec.label, **spec.options())


async def make_offer(pc: RTCPeerConnection) -> str:
    """Create an offer, set it locally, return its SDP (aiortc gathers all candidates
    first: it cannot trickle)."""
    with cached_addresses():  # aiortc gathers in setLocalDescription
        await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def _set_remote(pc: RTCPeerConnection, sdp: str, kind: str) -> None:
    from aiortc import RTCSessionDescription

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
    except Exception as exc:  # aiortc raises ValueError, a bare AssertionError, ...
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise SignalingError(f"the {kind} SDP was rejected: {cause}") from exc


async def accept_offer(pc: RTCPeerConnection, sdp: str) -> str:
    """Take the remote offer, answer it; return the answer's SDP. The sessions check
    the offer first (:class:`~aiosocker.rtc.sdp.CandidateGuard`)."""
    await _set_remote(pc, sdp, "offer")
    with cached_addresses():
        await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


async def answer_offer(pc: RTCPeerConnection, sdp: str) -> None:
    """Take the remote answer to our offer (the server session checks it first)."""
    await _set_remote(pc, sdp, "answer")


def parse_candidate(
    line: str, sdp_mid: str | None = None, sdp_mline_index: int | None = None
) -> RTCIceCandidate | None:
    """The remote candidate in a trickled CANDIDATE message, or ``None`` when there is
    nothing to add.

    Nothing to add: an mDNS ``.local`` candidate (aiortc would block for seconds trying
    to resolve it; the peer's checks reveal its address anyway), or the end of
    candidates (told to aiortc, it could give up before those checks arrive). Raises
    :class:`~aiosocker.SignalingError` for a line that is not a usable candidate
    (:func:`aiosocker.rtc.sdp.parse_candidate`). The sessions also count it and apply
    their address policy first (:class:`~aiosocker.rtc.sdp.CandidateGuard`).
    """
    from aiortc.sdp import candidate_from_sdp

    checked = check_candidate(line)
    if checked is None or checked.mdns:
        return None
    candidate = candidate_from_sdp(line.strip().removeprefix("a=").removeprefix("candidate:"))
    if sdp_mid is None and sdp_mline_index is None:
        sdp_mline_index = 0  # a data-channel-only SDP has one media section
    candidate.sdpMid = sdp_mid
    candidate.sdpMLineIndex = sdp_mline_index
    return candidate


async def add_candidate(pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
    """Add a remote candidate from :func:`parse_candidate` to ``pc``."""
    await pc.addIceCandidate(candidate)
