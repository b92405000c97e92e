"""aiosocker: walk every WebSocket connection through a chain of stages.

The public API, re-exported from the modules that hold it.
"""

from .admission import Admission, Authenticate
from .client import Backoff, connect
from .connection import Connection, Request, Transport
from .errors import (
    CloseCode,
    ConnectionClosedError,
    HandshakeRejected,
    OutOfStagesError,
    QueueFullError,
    SignalingError,
    SockerError,
    StageTimeoutError,
)
from .routes import CLIENT_JS_PATH, Route
from .server import ConnectionOptions, Server, ServerOptions, Setup, serve
from .stages import Entered, Handler, Result, Stage, Stages

__version__ = "0.1.0"

__all__ = [
    "CLIENT_JS_PATH",
    "Admission",
    "Authenticate",
    "Backoff",
    "CloseCode",
    "Connection",
    "ConnectionClosedError",
    "ConnectionOptions",
    "Entered",
    "Handler",
    "HandshakeRejected",
    "OutOfStagesError",
    "QueueFullError",
    "Request",
    "Result",
    "Route",
    "Server",
    "ServerOptions",
    "Setup",
    "SignalingError",
    "SockerError",
    "Stage",
    "StageTimeoutError",
    "Stages",
    "Transport",
    "__version__",
    "connect",
    "serve",
]
