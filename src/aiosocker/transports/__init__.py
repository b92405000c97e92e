"""Transport adapters: each turns one socket library into aiosocker connections.

An adapter is thin: it reads requests and frames, asks the sans-I/O
:class:`~aiosocker.handshake.Handshake` what to answer, and runs each upgraded socket as
a :class:`~aiosocker.Connection` on a :class:`~aiosocker.hub.Hub` (see ``hub.py`` for the
three calls). Adapters import the hub, the handshake and the connection, never the
server.

* ``websockets``: the default listener, and the Python client's socket;
* ``picows``: the fast listener (``aiosocker[fast]``);
* ``asgi``: an ASGI application, for Starlette, FastAPI and any ASGI server.

A new listener implements :class:`Listener`; ``serve()`` picks one by name.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Listener"]


class Listener(Protocol):
    """What ``serve()`` needs from a listening transport (made with the hub)."""

    async def start(self, host: str, port: int) -> int:
        """Start listening; return the port bound (the one picked for port 0)."""

    def close(self) -> None:
        """Stop accepting new connections (the hub then closes the live ones)."""

    async def wait_closed(self) -> None:
        """Wait until every socket and task of the listener is gone."""
