"""WebRTC DataChannels next to the WebSocket (``pip install aiosocker[rtc]``).

:func:`server_stages` / :func:`client_stages` add the rtc stages to a connection's chain
and return its :class:`ServerSession` / :class:`ClientSession` (both an
:class:`RtcSession`). The signaling envelope and the batching codec underneath are pure.
Importing :mod:`aiosocker.rtc` does not import aiortc (it costs ~0.3 s and ~36 MiB): the
peer connection is made, and aiortc imported, when the first handshake starts.
"""

from .batch import Batcher, BatchError, pack, unpack
from .channel import Channel
from .envelope import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    IceServers,
    Message,
    MessageType,
    Offer,
    Open,
    Ready,
    Renegotiate,
    Resume,
    decode,
    encode,
    is_signaling,
    validate_channels,
)
from .peer import IceServer, IceTransportPolicy, preload, strip_mdns_candidates
from .session import (
    DEFAULT_CHANNELS,
    ClientSession,
    RtcOptions,
    RtcSession,
    ServerSession,
    client_stages,
    server_stages,
)
from .turn import TurnSecret, turn_credentials

__all__ = [
    "DEFAULT_CHANNELS",
    "Answer",
    "BatchError",
    "Batcher",
    "Bye",
    "Candidate",
    "Channel",
    "ChannelSpec",
    "ClientSession",
    "Error",
    "IceServer",
    "IceServers",
    "IceTransportPolicy",
    "Message",
    "MessageType",
    "Offer",
    "Open",
    "Ready",
    "Renegotiate",
    "Resume",
    "RtcOptions",
    "RtcSession",
    "ServerSession",
    "TurnSecret",
    "client_stages",
    "decode",
    "encode",
    "is_signaling",
    "pack",
    "preload",
    "server_stages",
    "strip_mdns_candidates",
    "turn_credentials",
    "unpack",
    "validate_channels",
]
