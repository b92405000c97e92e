"""socker: walk every WebSocket connection through a chain of stages.

The public API, re-exported from the modules that hold it.
"""

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
from .stages import Entered, Handler, Result, Stage, Stages

__version__ = "0.1.0"

__all__ = [
    "CloseCode",
    "ConnectionClosedError",
    "Entered",
    "Handler",
    "HandshakeRejected",
    "OutOfStagesError",
    "QueueFullError",
    "Result",
    "SignalingError",
    "SockerError",
    "Stage",
    "StageTimeoutError",
    "Stages",
    "__version__",
]
