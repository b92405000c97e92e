"""Ready-made stages that open WebRTC DataChannels over an aiosocker connection.

Server (offers)                       Client (answers)
---------------                       ----------------
app stages (e.g. hello -> scene)      app stages (e.g. scene: ``await rtc.ready()``)
``rtc_ready``  <- READY               ``rtc_offer``  <- OFFER, sends ANSWER, then OPEN
``rtc_answer`` <- ANSWER              ``rtc_open``   <- OPEN
``rtc_open``   <- OPEN, sends OPEN    app's final stages
app's final stages

:func:`server_stages` makes a :class:`ServerSession` (:mod:`.server_session`),
:func:`client_stages` a :class:`ClientSession` (:mod:`.client_session`); both are an
:class:`RtcSession` (:mod:`.base_session`: channels, hooks, signaling outside the rtc
stages, the peer connection's life). This module gathers them in one place.

Each rtc stage has a timeout (expiry closes with 4408). Malformed or out-of-order
signaling, or an SDP the WebRTC stack rejects, closes with 4400. The peer connection
lives exactly as long as the WebSocket: closing one closes the other.
"""

from .base_session import DEFAULT_CHANNELS, RtcOptions, RtcSession, SessionHook
from .client_session import ClientSession, client_stages
from .server_session import ServerSession, server_stages

__all__ = [
    "DEFAULT_CHANNELS",
    "ClientSession",
    "RtcOptions",
    "RtcSession",
    "ServerSession",
    "SessionHook",
    "client_stages",
    "server_stages",
]
