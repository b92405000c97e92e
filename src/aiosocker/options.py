"""Every option, its default and its check, declared once.

:class:`Settings` is what the hub, the listeners, the client and each connection read.
The typed keyword arguments of ``serve()``, ``connect()`` and the ASGI app
(``ServerOptions``, ``HubOptions``, ``ClientOptions``) name a subset of its fields; a
unit test keeps those names in step with the fields here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeAlias

from .limits import Rate

__all__ = ["DEFAULTS", "Drive", "Settings", "TextPolicy", "TransportName"]

Drive: TypeAlias = Literal["async", "tick"]
"""``"async"`` runs handlers as messages arrive; ``"tick"`` queues them for ``poll()``."""
TextPolicy: TypeAlias = Literal["close", "ignore"]
"""What a text frame does: close the connection with 1003, or get dropped (logged)."""
TransportName: TypeAlias = Literal["websockets", "picows"]
"""The listener ``serve()`` runs on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The options of a server, an ASGI app or a client, with their defaults."""

    # -- every connection, both sides
    drive: Drive = "async"
    """``"async"``: handlers run as messages arrive; ``"tick"``: they wait in a bounded
    inbox for ``poll()`` / ``server.tick()`` in your game loop."""
    max_size: int = 2**20
    """Largest message accepted, in bytes; a larger one closes with 1009."""
    max_queue: int = 1024
    """Bound of each connection's outgoing queue, tick inbox and deferred messages."""
    text: TextPolicy = "close"
    """A text frame closes the connection with 1003 (``"close"``) or is dropped."""
    ping_interval: float | None = 20
    """Seconds between keepalive pings (``None``: none)."""
    ping_timeout: float | None = 20
    """Seconds a ping may go unanswered before the connection is dropped."""
    close_timeout: float = 10
    """Seconds to wait for the peer's answer to a close frame before dropping it."""
    max_memory: int = 4 * 2**20
    """Bytes one connection may make its side hold: queued outgoing messages (and the
    socket's write buffer), deferred messages and the tick inbox. Past it ``write()``
    raises QueueFullError, and what the peer causes (deferred messages, unread pongs)
    closes the connection with 4413. At least ``max_size``."""
    rate: Rate | None = None
    """How fast each connection may send (a :class:`~aiosocker.limits.Rate`); a stage's
    own ``rate=`` overrides it. Past it the connection closes with 4429."""
    # -- every way of serving (serve() and the ASGI app)
    origins: Sequence[str] | None = None
    """Allowed browser origins; default: same host and port as the request only."""
    max_connections: int | None = None
    """More connections than this at once get HTTP 503."""
    authenticate: Callable[..., Any] | None = None
    """Sees the :class:`~aiosocker.Request`; returns the user or refuses."""
    on_open: Callable[..., Any] | None = None
    """``hook(conn)`` for every connection, once it is set up."""
    on_close: Callable[..., Any] | None = None
    """``hook(conn, code, reason)`` for every connection, once it has ended."""
    on_error: Callable[..., Any] | None = None
    """``hook(conn, exc)`` when a handler raises or a stage times out."""
    routes: Mapping[str, Any] | None = None
    """Extra HTTP routes ``{path: Route}`` (``/aiosocker.js`` is built in)."""
    allowed_hosts: Sequence[str] | None = None
    """``Host`` names served; others get 421 (DNS rebinding). Default: loopback names
    only on a loopback address, any name elsewhere. ``[".example.com"]`` allows the
    domain and its subdomains, ``["*"]`` every name."""
    max_per_ip: int | None = None
    """Open connections allowed from one IP address at once; more get HTTP 503."""
    new_per_ip: float | None = None
    """New connections per second allowed from one IP address; more get HTTP 429."""
    resume: float | None = None
    """Seconds a dropped connection may come back and resume (its id, user, state,
    rooms, stage and missed messages); ``None`` (default): no resume."""
    redis: str | None = None
    """``redis://host:port/db``: share rooms, broadcasts and resume sessions with every
    process using that Redis (``aiosocker[redis]``)."""
    metrics: bool = False
    """Serve ``/metrics`` in Prometheus' text format (``aiosocker[metrics]``)."""
    status_page: bool = False
    """Serve ``/status``: a live page of the stage funnel, close codes and timings.
    Like ``/metrics``, it answers only requests that pass ``origins`` and
    ``authenticate``."""
    # -- a listening server
    path: str = "/"
    """The WebSocket's HTTP path; other paths serve ``routes`` or 404."""
    transport: TransportName = "websockets"
    """``"websockets"`` (default) or ``"picows"`` (``aiosocker[fast]``)."""

    def __post_init__(self) -> None:
        if self.drive not in ("async", "tick"):
            raise ValueError(f"drive must be 'async' or 'tick', got {self.drive!r}")
        if self.text not in ("close", "ignore"):
            raise ValueError(f"text must be 'close' or 'ignore', got {self.text!r}")
        if self.max_size < 1:
            raise ValueError(f"max_size must be a positive number of bytes, got {self.max_size}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {self.max_queue}")
        if self.max_memory < self.max_size:
            raise ValueError(
                f"max_memory ({self.max_memory}) must be at least max_size ({self.max_size})"
            )
        if self.resume is not None and not self.resume > 0:
            raise ValueError(f"resume must be a positive number of seconds, got {self.resume}")
        if isinstance(self.allowed_hosts, str):
            raise TypeError("allowed_hosts is a list of host names, e.g. ['game.example']")
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.transport not in ("websockets", "picows"):
            raise ValueError(f"transport must be 'websockets' or 'picows', got {self.transport!r}")

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Settings:
        """Settings from keyword options, with a clear error for an unknown name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))}")
        return cls(**options)


DEFAULTS = Settings()
"""Every option at its default."""
