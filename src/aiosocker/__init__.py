"""aiosocker: walk every WebSocket connection through a chain of stages.

The public API, re-exported from the modules that hold it.
"""

from .client import Backoff, ClientOptions, connect
from .connection import CloseHook, Connection, ErrorHook, OpenHook, Setup, Transport
from .errors import (
    CloseCode,
    ConnectionClosedError,
    HandshakeRejected,
    OutOfStagesError,
    OverMemoryError,
    QueueFullError,
    RateExceededError,
    SignalingError,
    SockerError,
    StageTimeoutError,
)
from .handshake import Admission, Authenticate, Headers, Request
from .hub import Hub, HubOptions
from .limits import Rate
from .options import Drive, Settings, TextPolicy, TransportName
from .routes import CLIENT_JS_PATH, Route
from .server import Server, ServerOptions, serve
from .stages import Entered, Handler, Result, Stage, Stages
from .transports.asgi import ASGIApp

__version__ = "0.1.0"

__all__ = [
    "CLIENT_JS_PATH",
    "ASGIApp",
    "Admission",
    "Authenticate",
    "Backoff",
    "ClientOptions",
    "CloseCode",
    "CloseHook",
    "Connection",
    "ConnectionClosedError",
    "Drive",
    "Entered",
    "ErrorHook",
    "Handler",
    "HandshakeRejected",
    "Headers",
    "Hub",
    "HubOptions",
    "OpenHook",
    "OutOfStagesError",
    "OverMemoryError",
    "QueueFullError",
    "Rate",
    "RateExceededError",
    "Request",
    "Result",
    "Route",
    "Server",
    "ServerOptions",
    "Settings",
    "Setup",
    "SignalingError",
    "SockerError",
    "Stage",
    "StageTimeoutError",
    "Stages",
    "TextPolicy",
    "Transport",
    "TransportName",
    "__version__",
    "connect",
    "serve",
]
