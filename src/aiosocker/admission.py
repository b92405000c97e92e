"""Who may open a WebSocket: origin, connection limit, authentication.

One policy for every transport (websockets, ASGI, picows), checked on the HTTP request
before any stage runs. A refusal is a :class:`~aiosocker.HandshakeRejected` carrying the
HTTP status the transport answers with.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from .connection import Request
from .errors import HandshakeRejected

__all__ = ["Admission", "Authenticate"]

Authenticate: TypeAlias = Callable[[Request], "Any | Awaitable[Any]"]
"""Sees the request; returns the user to attach (any value), ``False`` to refuse with
403, or raises :class:`~aiosocker.HandshakeRejected` with its own status."""


def _header(request: Request, name: str) -> str | None:
    try:
        return request.headers.get(name)
    except LookupError:  # websockets' Headers: the header came more than once
        raise HandshakeRejected(HTTPStatus.FORBIDDEN, f"more than one {name} header") from None


def _origin_host(origin: str) -> str:
    return urlsplit(origin).netloc.lower()


@dataclass(frozen=True, slots=True)
class Admission:
    """The admission policy of a server."""

    origins: Sequence[str] | None = None
    """Allowed ``Origin`` values (``"*"`` allows all). ``None``: a browser's Origin must
    name the same host and port as the ``Host`` header. Requests without an Origin
    header (non-browser clients) are allowed either way."""
    max_connections: int | None = None
    """Open connections allowed at once; more get HTTP 503."""
    authenticate: Authenticate | None = None
    """Called with the request after the other checks."""

    def __post_init__(self) -> None:
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        if isinstance(self.origins, str):
            raise TypeError("origins is a list of origins, e.g. ['https://example.com']")

    def check_origin(self, request: Request) -> None:
        """Raise 403 unless the request's Origin is allowed."""
        origin = _header(request, "Origin")
        if origin is None:
            return
        if self.origins is None:
            host = (_header(request, "Host") or "").lower()
            if _origin_host(origin) != host:
                raise HandshakeRejected(
                    HTTPStatus.FORBIDDEN, f"origin {origin} not allowed for host {host}"
                )
        elif "*" not in self.origins and origin not in self.origins:
            raise HandshakeRejected(HTTPStatus.FORBIDDEN, f"origin {origin} not allowed")

    async def admit(self, request: Request, live: int) -> Any:
        """Run every check; return the user for the connection or raise."""
        self.check_origin(request)
        if self.max_connections is not None and live >= self.max_connections:
            raise HandshakeRejected(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server full ({self.max_connections} connections)",
            )
        if self.authenticate is None:
            return None
        user = self.authenticate(request)
        if inspect.isawaitable(user):
            user = await user
        if user is False:
            raise HandshakeRejected(HTTPStatus.FORBIDDEN, "authentication refused")
        return user
