"""The client's rtc session: it answers the server's offer.

Its stages: ``rtc_offer`` (the server's OFFER: a new peer connection, ANSWER, then OPEN
once every channel is open) and ``rtc_open`` (the server's OPEN). The app calls
:meth:`ClientSession.ready` from the stage before; :meth:`ClientSession.renegotiate`
closes the peer connection, goes back to ``rtc_offer`` and sends READY again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Unpack

from ..connection import Connection
from .base_session import RtcOptions, RtcSession
from .envelope import (
    Answer,
    IceServer,
    IceServers,
    Message,
    Offer,
    Open,
    Ready,
    Renegotiate,
    decode,
    encode,
    validate_channels,
)
from .peer import accept_offer, create_channel

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

__all__ = ["ClientSession", "client_stages"]

logger = logging.getLogger("aiosocker.rtc")


class ClientSession(RtcSession):
    """The client's side: the server's offer says which channels to open."""

    _REMOTE_SDP = "OFFER"
    # The server the client chose names its own addresses; and if both sides dropped the
    # other's candidates, nobody would send the first connectivity check.
    _REMOTE_ADDRESSES = "any"

    offered_ice_servers: tuple[IceServer, ...] = ()
    """The ICE servers the server sent for the current handshake (ICE_SERVERS), used
    after the client's own :attr:`ice_servers`."""

    async def ready(self) -> None:
        """Tell the server we are ready for an offer (call it from the stage before the
        rtc stages, as the Go client did after building its scene)."""
        self._asked = True
        self.offered_ice_servers = ()
        await self.conn.send(encode(Ready()))

    async def _rtc_offer(self, message: bytes) -> bool:
        servers = decode(message)
        if isinstance(servers, IceServers):  # for the OFFER that follows
            self.offered_ice_servers = servers.servers
            return False
        offer = self._expect(message, Offer)
        self.specs = validate_channels(offer.channels)
        sdp = self._remote_sdp(offer.sdp, "offer")  # 4400 before a peer is made
        pc = await self._fresh_peer(self.offered_ice_servers)
        by_label = {spec.label: spec for spec in self.specs}
        for spec in self.specs:
            if spec.negotiated:  # both sides create it, with the same id
                self._attach(create_channel(pc, spec), spec)

        @pc.on("datachannel")
        def _announced(dc: Any) -> None:
            spec = by_label.get(dc.label)
            if spec is None:
                logger.warning("ignoring channel %r the offer did not list", dc.label)
                return
            self._attach(dc, spec)

        answer = await accept_offer(pc, sdp)
        await self.conn.send(encode(Answer(answer)))
        self._background.spawn(self._send_open(pc))
        return True

    STAGES = (
        ("rtc_offer", _rtc_offer),
        ("rtc_open", RtcSession._rtc_open),
    )

    async def _send_open(self, pc: RTCPeerConnection) -> None:
        if not self.is_open:  # an offer with no channels is open at once
            await self._all_open.wait()  # announced channels arrive one by one
        if self.pc is pc and not self.conn.closed:
            await self.conn.send(encode(Open()))

    async def _answer_open(self) -> None:
        pass  # our OPEN went out once our channels opened (_send_open)

    async def _ask_again(self) -> None:
        await self._close_peer()
        self.conn.jump("rtc_offer")
        self.offered_ice_servers = ()
        await self.conn.send(encode(Ready()))

    def _crossed(self, message: Message) -> bool:
        # Both sides may renegotiate at once: our READY crossed the server's RENEGOTIATE,
        # and the offer answering our READY follows it. Drop it.
        return self._asked and isinstance(message, Renegotiate)

    def _after_stages(self, message: Message) -> bool | None:
        if isinstance(message, Renegotiate):
            self._background.spawn(self.renegotiate())
            return True
        return None


def client_stages(conn: Connection, **options: Unpack[RtcOptions]) -> ClientSession:
    """Add the client's rtc stages (``rtc_offer``, ``rtc_open``) here; the server's offer
    says which channels to expect. Call ``await session.ready()`` from the stage before.
    The options are :class:`RtcOptions`."""
    return ClientSession(conn, **options)
