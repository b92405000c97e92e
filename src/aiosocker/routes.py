"""Plain HTTP routes a socker server answers beside its WebSocket (e.g. ``/aiosocker.js``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

__all__ = ["CLIENT_JS_PATH", "Route", "default_routes"]

CLIENT_JS_PATH = "/aiosocker.js"
"""Where every socker server serves the browser client."""


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP ``GET`` answer: a content type and a body (bytes, or a function making
    them on each request)."""

    content_type: str
    body: bytes | Callable[[], bytes]
    private: bool = False
    """Answer only requests that pass the server's admission (``origins`` and
    ``authenticate``, as a WebSocket would): for pages such as ``/status``."""

    def render(self) -> tuple[str, bytes]:
        """The content type and the body to send now."""
        body = self.body if isinstance(self.body, bytes) else self.body()
        return self.content_type, body

    @classmethod
    def html(cls, text: str) -> Route:
        """A UTF-8 HTML page."""
        return cls("text/html; charset=utf-8", text.encode())


_STATIC = ("static",)
"""Where the browser client lives in the package: ``aiosocker.js`` (the entry),
``aiosocker.d.ts`` and the modules the entry imports, in ``aiosocker/``."""

_JS = "text/javascript; charset=utf-8"
_TS = "application/typescript; charset=utf-8"


def _package_file(*parts: str) -> bytes | None:
    resource = files("aiosocker").joinpath(*parts)
    return resource.read_bytes() if resource.is_file() else None


def _client_modules() -> dict[str, bytes]:
    """The entry's modules by name (``connection.js``, ...), read from the package."""
    folder = files("aiosocker").joinpath(*_STATIC, "aiosocker")
    if not folder.is_dir():
        return {}
    return {
        module.name: module.read_bytes()
        for module in sorted(folder.iterdir(), key=lambda m: m.name)
        if module.name.endswith(".js") and module.is_file()
    }


def default_routes() -> dict[str, Route]:
    """The routes every server has: the browser client (the entry ``/aiosocker.js`` and
    its modules at ``/aiosocker/<name>.js``, which it imports relatively, so they resolve
    under any mount point) and its type declarations."""
    routes: dict[str, Route] = {}
    for path, name, kind in (
        (CLIENT_JS_PATH, "aiosocker.js", _JS),
        ("/aiosocker.d.ts", "aiosocker.d.ts", _TS),
    ):
        body = _package_file(*_STATIC, name)
        if body is not None:
            routes[path] = Route(kind, body)
    for name, body in _client_modules().items():
        routes[f"/aiosocker/{name}"] = Route(_JS, body)
    return routes
