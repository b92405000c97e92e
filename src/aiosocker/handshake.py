"""The HTTP side of every way of serving, sans-I/O: who gets a WebSocket, and what
everyone else is answered.

Every transport (websockets, picows, ASGI) turns what it read into a :class:`Request`
and asks the same :class:`Handshake`, so their answers are identical by construction:

1. :meth:`Handshake.answer` -- requests that will not become a WebSocket:

   * another path: its :class:`~aiosocker.Route` (``GET``; ``HEAD`` without the body),
     ``405`` for other methods, ``404`` for no route, ``500`` (logged) if the route
     raises;
   * the WebSocket's path without a valid upgrade: ``426`` (not an upgrade), ``400``
     (bad ``Sec-WebSocket-Version`` or ``Sec-WebSocket-Key``), ``405`` (not ``GET``).

   ``None`` means: a well-formed upgrade, for admission to decide.
2. :meth:`Handshake.check_host` (421), then :meth:`Admission.check` and
   :meth:`Admission.authenticated` -- the admission verdict: a doubled ``Origin`` or
   ``Host`` header (403), the Origin rule (403), ``max_connections`` (503), then
   ``authenticate`` (the user, or 403/its own status; 500, logged, if it raises).
   A refusal is a :class:`~aiosocker.HandshakeRejected`; :func:`refusal` turns it into
   the :class:`Response` to send.

Nothing here reads a socket: the only thing that may wait is the user's own
``authenticate`` hook.
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from .errors import HandshakeRejected
from .routes import Route

__all__ = [
    "BAD_REQUEST",
    "HEAD_TOO_LARGE",
    "MAX_HEAD",
    "Admission",
    "Authenticate",
    "BadRequest",
    "Handshake",
    "Headers",
    "Request",
    "Response",
    "parse_head",
    "refusal",
    "upgrade_error",
]

logger = logging.getLogger("aiosocker")

Authenticate: TypeAlias = Callable[["Request"], "Any | Awaitable[Any]"]
"""Sees the request; returns the user to attach (any value), ``False`` to refuse with
403, or raises :class:`~aiosocker.HandshakeRejected` with its own status."""

_TEXT = "text/plain; charset=utf-8"


class Headers(Mapping[str, str]):
    """HTTP headers: case-insensitive lookups, and every value of a repeated header.

    ``headers[name]`` and ``headers.get(name)`` give the first value; :meth:`get_all`
    gives them all (a doubled ``Origin`` must be seen, whatever the transport).

    Made from another case-insensitive multi-valued mapping (one with ``get_all`` and
    ``raw_items``, as websockets' ``Headers``), it reads through it instead of copying:
    a server holds one copy of each connection's request headers, not two.
    """

    __slots__ = ("_index", "_items", "_view")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        self._view: Any = None
        self._items: tuple[tuple[str, str], ...] = ()
        self._index: dict[str, list[str]] = {}
        if isinstance(items, Mapping) and all(
            callable(getattr(items, method, None)) for method in ("get_all", "raw_items")
        ):
            self._view = items
            return
        raw = getattr(items, "raw_items", None)  # keeps repeats a mapping view drops
        pairs = raw() if raw is not None else items.items() if isinstance(items, Mapping) else items
        self._items = tuple((str(k), str(v)) for k, v in pairs)
        for name, value in self._items:
            self._index.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        if self._view is not None:
            return name in self._view
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        first: dict[str, str] = {}  # one name per header, as len() counts them
        for name, _ in self.raw_items():
            first.setdefault(name.lower(), name)
        return iter(first.values())

    def __len__(self) -> int:
        return len(self._view) if self._view is not None else len(self._index)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (empty if absent)."""
        if self._view is not None:
            return list(self._view.get_all(name))
        return list(self._index.get(name.lower(), ()))

    def raw_items(self) -> tuple[tuple[str, str], ...]:
        """Every (name, value) pair as received, repeats included."""
        if self._view is not None:
            return tuple(self._view.raw_items())
        return self._items

    def __repr__(self) -> str:
        return f"Headers({list(self.raw_items())!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """The HTTP request that opened a WebSocket (or asked for a route), as every
    transport reports it."""

    path: str
    """The path, without the query string."""
    query: str = ""
    """The query string, without ``?``."""
    headers: Mapping[str, str] = field(default_factory=Headers)
    """Request headers (a :class:`Headers`: lookups are case-insensitive)."""
    remote_address: Any = None
    """The peer's address as the transport gives it, usually ``(host, port)``."""
    method: str = "GET"
    """The HTTP method."""
    local_address: Any = None
    """The server's own address the request came in on, ``(host, port)``, if known
    (the default ``allowed_hosts`` rule reads it)."""

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))

    @classmethod
    def from_target(
        cls,
        target: str,
        headers: Iterable[tuple[str, str]] | Mapping[str, str],
        remote_address: Any = None,
        method: str = "GET",
        local_address: Any = None,
    ) -> Request:
        """Build it from a request target (``/path?query``) as read off the wire."""
        path, _, query = target.partition("?")
        return cls(
            path or "/", query, Headers(headers), remote_address, method.upper(), local_address
        )

    @property
    def remote_ip(self) -> str:
        """The peer's IP address as a string (``""`` if unknown)."""
        address = self.remote_address
        if isinstance(address, (tuple, list)) and address:
            return str(address[0])
        return "" if address is None else str(address)

    def header(self, name: str) -> str | None:
        """The value of header ``name``; 403 if the request carries it more than once
        (two ``Origin`` headers must not let either one through)."""
        headers = self.headers
        values = headers.get_all(name) if isinstance(headers, Headers) else []
        if len(values) > 1:
            raise HandshakeRejected(HTTPStatus.FORBIDDEN, f"more than one {name} header")
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer for a transport to send instead of upgrading."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def reason(self) -> str:
        """The status line's reason phrase."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def to_http(self) -> bytes:
        """The response as HTTP/1.1 bytes, closing the connection after it."""
        lines = [f"HTTP/1.1 {self.status} {self.reason}", *(f"{k}: {v}" for k, v in self.headers)]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[str, str]) -> Response:
        """A ``text/plain`` answer (a newline is added)."""
        body = f"{text}\n".encode()
        return cls(int(status), _with_length(headers, _TEXT, len(body)), body)


def _with_length(
    headers: Sequence[tuple[str, str]], content_type: str, length: int
) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", content_type), ("Content-Length", str(length)), *headers)


def refusal(exc: HandshakeRejected) -> Response:
    """The HTTP answer to a refused handshake: its status, its reason as the body."""
    return Response.text(exc.status, exc.reason)


def _host_of(address: Any) -> str:
    if isinstance(address, (tuple, list)) and address:
        return str(address[0])
    return ""


def _hostname(host: str) -> str:
    """``Host`` header value -> the bare lower-case name (no port, no brackets)."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return host.lower()


def _host_matches(name: str, allowed: str) -> bool:
    if allowed.startswith("."):  # the domain and every subdomain
        return name == allowed[1:] or name.endswith(allowed)
    return name == allowed


@functools.lru_cache(maxsize=256)  # every request names the same few hosts
def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",")}


@dataclass(frozen=True, slots=True)
class Admission:
    """Who may open a WebSocket: origin, connection limit, authentication."""

    origins: Sequence[str] | None = None
    """Allowed ``Origin`` values (``"*"`` allows all). ``None``: a browser's Origin must
    name the same host and port as the ``Host`` header (the scheme is not compared).
    Requests without an Origin header (non-browser clients) are allowed either way."""
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
        host = request.header("Host")
        origin = request.header("Origin")
        if origin is None:
            return
        if self.origins is None:
            host = (host or "").lower()
            if urlsplit(origin).netloc.lower() != host:
                raise HandshakeRejected(
                    HTTPStatus.FORBIDDEN, f"origin {origin} not allowed for host {host}"
                )
        elif "*" not in self.origins and origin not in self.origins:
            raise HandshakeRejected(HTTPStatus.FORBIDDEN, f"origin {origin} not allowed")

    def check(self, request: Request, live: int) -> None:
        """The checks that never wait: origin, then the connection limit."""
        self.check_origin(request)
        if self.max_connections is not None and live >= self.max_connections:
            raise HandshakeRejected(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"server full ({self.max_connections} connections)",
            )

    async def authenticated(self, request: Request) -> Any:
        """The user ``authenticate`` returns (``None`` without the hook), or raise
        :class:`~aiosocker.HandshakeRejected`: 403 for ``False``, its own status, or 500
        (logged) for a hook that raised anything else."""
        if self.authenticate is None:
            return None
        try:
            user = self.authenticate(request)
            if inspect.isawaitable(user):
                user = await user
        except HandshakeRejected:
            raise
        except Exception as exc:
            logger.exception("authenticate raised for %s", request.path)
            raise HandshakeRejected(
                HTTPStatus.INTERNAL_SERVER_ERROR, "authentication failed"
            ) from exc
        if user is False:
            raise HandshakeRejected(HTTPStatus.FORBIDDEN, "authentication refused")
        return user

    async def admit(self, request: Request, live: int) -> Any:
        """Run every check; return the user for the connection or raise."""
        self.check(request, live)
        return await self.authenticated(request)


@dataclass(frozen=True, slots=True)
class Handshake:
    """The HTTP policy of one server: its WebSocket path, routes and admission."""

    path: str
    """The WebSocket's path; requests to others are answered from ``routes``."""
    routes: Mapping[str, Route]
    """Plain HTTP answers by path."""
    admission: Admission
    """Who may open a WebSocket."""
    allowed_hosts: Sequence[str] | None = None
    """``Host`` names served (see :meth:`check_host`)."""

    def check_host(self, request: Request) -> None:
        """Refuse (421) a ``Host`` this server does not answer to: DNS rebinding.

        ``allowed_hosts=None`` (the default): a request that came in on a loopback
        address must name a loopback host (``localhost``, ``*.localhost``,
        ``127.0.0.0/8``, ``::1``); on other addresses every name is served.
        A list: its names only (``".example.com"`` matches the domain and every
        subdomain; ``"*"`` matches all). Ports are not compared.
        """
        rule = self.allowed_hosts
        if rule is not None and "*" in rule:
            return
        if rule is None and not _is_loopback(_host_of(request.local_address)):
            return
        name = _hostname(request.header("Host") or "")
        if rule is None:
            ok = _is_loopback(name)
        else:
            ok = any(_host_matches(name, allowed.lower()) for allowed in rule)
        if not ok:
            raise HandshakeRejected(
                HTTPStatus.MISDIRECTED_REQUEST, f"host {name or '(none)'} is not served here"
            )

    def answer(self, request: Request) -> Response | None:
        """The HTTP answer for ``request``, or ``None`` if it is a well-formed upgrade
        to the WebSocket's path (admission decides it)."""
        try:
            self.check_host(request)
        except HandshakeRejected as exc:
            return refusal(exc)
        if request.path != self.path:
            return self.route(request)
        if request.method != "GET":
            return Response.text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        return upgrade_error(request)

    def is_private(self, request: Request) -> bool:
        """Whether ``request`` asks for a route that admission must pass first."""
        route = self.routes.get(request.path)
        return route is not None and route.private

    def route(self, request: Request) -> Response:
        """The answer of the route at ``request.path``: 404, 405, 500 or its body."""
        route = self.routes.get(request.path)
        if route is None:
            return Response.text(HTTPStatus.NOT_FOUND, "not found")
        if request.method not in ("GET", "HEAD"):
            return Response.text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        try:
            content_type, body = route.render()
        except Exception:
            logger.exception("route %s raised", request.path)
            return Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        headers = _with_length((("Cache-Control", "no-cache"),), content_type, len(body))
        return Response(HTTPStatus.OK, headers, b"" if request.method == "HEAD" else body)


MAX_HEAD = 16 * 1024
"""Largest HTTP request head accepted, in bytes (as ``websockets`` and picows allow)."""


class BadRequest(ValueError):
    """An HTTP request head that cannot be parsed; answer :data:`BAD_REQUEST`."""


BAD_REQUEST = Response.text(HTTPStatus.BAD_REQUEST, "malformed HTTP request")
HEAD_TOO_LARGE = Response.text(
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head over {MAX_HEAD} bytes"
)


def parse_head(head: bytes, remote_address: Any = None, local_address: Any = None) -> Request:
    """Parse an HTTP/1.1 request head (without the blank line that ends it)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadRequest(f"bad request line {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise BadRequest(f"bad header line {line[:80]!r}")
        headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    method = parts[0].decode("latin-1")
    target = parts[1].decode("latin-1")
    return Request.from_target(target, headers, remote_address, method, local_address)


def upgrade_error(request: Request) -> Response | None:
    """Why ``request`` is no valid WebSocket upgrade (426 / 400), or ``None``."""
    headers = request.headers
    if "websocket" not in _tokens(headers.get("Upgrade")) or "upgrade" not in _tokens(
        headers.get("Connection")
    ):
        return Response.text(
            HTTPStatus.UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: send an Upgrade: websocket request",
            ("Upgrade", "websocket"),
        )
    if headers.get("Sec-WebSocket-Version") != "13":
        return Response.text(
            HTTPStatus.BAD_REQUEST,
            "unsupported Sec-WebSocket-Version (13 is)",
            ("Sec-WebSocket-Version", "13"),
        )
    try:
        key = base64.b64decode(headers.get("Sec-WebSocket-Key", ""), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 16:
        return Response.text(HTTPStatus.BAD_REQUEST, "invalid Sec-WebSocket-Key")
    return None
