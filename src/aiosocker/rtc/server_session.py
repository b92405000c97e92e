"""The server's rtc session: it makes the offer.

Its stages: ``rtc_ready`` (READY from the client: a new peer connection and its channels,
then OFFER), ``rtc_answer`` (the client's ANSWER), ``rtc_open`` (the client's OPEN: wait
for our own channels, then OPEN back). :meth:`ServerSession.renegotiate` sends
RENEGOTIATE; the client answers with READY, which takes the chain back to ``rtc_ready``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Unpack

from ..connection import Connection
from .base_session import DEFAULT_CHANNELS, RtcOptions, RtcSession
from .envelope import (
    Answer,
    ChannelSpec,
    IceServers,
    Message,
    Offer,
    Open,
    Ready,
    Renegotiate,
    encode,
)
from .peer import answer_offer, create_channel, make_offer
from .sdp import IPAddress, host_addresses
from .turn import TurnSecret

__all__ = ["ServerSession", "server_stages"]


class ServerSession(RtcSession):
    """The server's side: it declares the channels and makes the offer."""

    _own: frozenset[IPAddress] = frozenset()
    """This host's addresses, from the host candidates of our last offer."""

    _REMOTE_SDP = "ANSWER"
    _REMOTE_ADDRESSES = "peer"  # no checks to addresses the peer has no business naming

    def __init__(self, conn: Connection, *, turn: TurnSecret | None = None, **options: Any) -> None:
        if turn is not None and not isinstance(turn, TurnSecret):
            raise TypeError(f"turn must be a TurnSecret, got {type(turn).__name__}")
        self.turn = turn
        """The TURN server whose credentials each handshake mints for the client."""
        super().__init__(conn, **options)

    async def _rtc_ready(self, message: bytes) -> bool:
        self._expect(message, Ready)
        turn = self.turn
        # Relay-only, the server relays through the same TURN server, with credentials
        # of its own; otherwise its own address is what the players' relays reach.
        own = (
            (turn.mint(f"{self.conn.id}.server"),)
            if turn is not None and self.ice_transport_policy == "relay"
            else ()
        )
        pc = await self._fresh_peer(own)
        for spec in self.specs:
            self._attach(create_channel(pc, spec), spec)
        sdp = await make_offer(pc)
        self._own = host_addresses(sdp)  # a peer on loopback is on this host: it may name them
        if turn is not None:  # fresh credentials for each handshake, just before its OFFER
            await self.conn.send(encode(IceServers((turn.mint(self.conn.id),))))
        await self.conn.send(encode(Offer(sdp, self.specs)))
        return True

    async def _rtc_answer(self, message: bytes) -> bool:
        answer = self._expect(message, Answer)
        assert self.pc is not None
        # Checked, counted and filtered before aiortc sees it: 4400 at once for an SDP
        # aiortc would fail on later, or for too many candidates.
        await answer_offer(self.pc, self._remote_sdp(answer.sdp, "answer", self._own))
        return True

    STAGES = (
        ("rtc_ready", _rtc_ready),
        ("rtc_answer", _rtc_answer),
        ("rtc_open", RtcSession._rtc_open),
    )

    async def _answer_open(self) -> None:
        # The side that created a channel sees it open only after the peer's ack.
        await asyncio.gather(*(ch.wait_open() for ch in self.channels.values()))
        await self.conn.send(encode(Open()))

    async def _ask_again(self) -> None:
        # The client closes its peer and sends READY; rtc_ready closes ours. Until then
        # our channels die on purpose: no on_close for them.
        self._lost_pc = self.pc
        await self.conn.send(encode(Renegotiate("server asked")))

    def _after_stages(self, message: Message) -> bool | None:
        if isinstance(message, Ready):
            self.conn.jump("rtc_ready")  # the client renegotiates; rtc_ready takes it
            return False
        return None

    def _label(self, label: str | None) -> str:
        label = super()._label(label)
        if all(spec.label != label for spec in self.specs):
            labels = [spec.label for spec in self.specs]
            raise LookupError(f"no channel {label!r}; the channels are {labels}")
        return label


def server_stages(
    conn: Connection,
    *,
    channels: Sequence[ChannelSpec] = DEFAULT_CHANNELS,
    turn: TurnSecret | None = None,
    **options: Unpack[RtcOptions],
) -> ServerSession:
    """Add the server's rtc stages (``rtc_ready``, ``rtc_answer``, ``rtc_open``) here:
    after the stages added so far. ``channels`` are the channels to open (default: one
    unordered, unreliable ``"game"``); ``turn`` a TURN server to hand each client
    short-lived credentials for (:class:`~aiosocker.rtc.TurnSecret`: sent in an
    ICE_SERVERS message before each OFFER); the other options are :class:`RtcOptions`."""
    return ServerSession(conn, channels=channels, turn=turn, **options)
