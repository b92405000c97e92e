"""WebRTC next to the WebSocket: signaling envelope and DataChannel batching.

Only the pure pieces live here so far; importing :mod:`socker.rtc` does not import aiortc
(it costs ~0.3 s and ~36 MiB), so the aiortc-backed parts will be imported lazily.
"""

from .batch import Batcher, BatchError, pack, unpack
from .channel import Channel
from .envelope import (
    Answer,
    Bye,
    Candidate,
    ChannelSpec,
    Error,
    Message,
    MessageType,
    Offer,
    Open,
    Ready,
    Renegotiate,
    decode,
    encode,
    is_signaling,
    validate_channels,
)
from .peer import IceServer, strip_mdns_candidates
from .session import DEFAULT_CHANNELS, RtcSession, client_stages, server_stages

__all__ = [
    "DEFAULT_CHANNELS",
    "Answer",
    "BatchError",
    "Batcher",
    "Bye",
    "Candidate",
    "Channel",
    "ChannelSpec",
    "Error",
    "IceServer",
    "Message",
    "MessageType",
    "Offer",
    "Open",
    "Ready",
    "Renegotiate",
    "RtcSession",
    "client_stages",
    "decode",
    "encode",
    "is_signaling",
    "pack",
    "server_stages",
    "strip_mdns_candidates",
    "unpack",
    "validate_channels",
]
