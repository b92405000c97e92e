"""The ``picows`` listener (``aiosocker[fast]``): the same connections, stages, hooks and
close codes as the default listener, at several times less CPU per message."""

from .listener import BACKLOG_PAUSE, HANDSHAKE_TIMEOUT, PicowsListener, PicowsSocket

__all__ = ["BACKLOG_PAUSE", "HANDSHAKE_TIMEOUT", "PicowsListener", "PicowsSocket"]
