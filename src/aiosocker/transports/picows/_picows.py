"""The one module that imports picows: its names, and the protocol factory.

picows' ``ws_create_server`` owns its listening socket; aiosocker's front (which must
answer HTTP and wait for ``authenticate`` before picows takes over) owns it instead,
so the picows protocol is made here with the arguments ``ws_create_server`` uses.
That constructor is not part of picows' documented API: the ``fast`` extra pins the
picows versions this is tested with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...options import Settings

try:
    from picows import WSAutoPingStrategy, WSCloseCode, WSListener, WSMsgType
    from picows.picows import WSProtocol  # type: ignore[attr-defined]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "transport='picows' needs the picows package: pip install 'aiosocker[fast]'"
    ) from exc

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "WSCloseCode",
    "WSListener",
    "normalize_upgrade",
    "protocol_factory",
]

# Enum members looked up once: attribute access on a picows enum costs ~150 ns.
BINARY = WSMsgType.BINARY
TEXT = WSMsgType.TEXT
CONTINUATION = WSMsgType.CONTINUATION
CLOSE = WSMsgType.CLOSE
PING = WSMsgType.PING
PONG = WSMsgType.PONG


def protocol_factory(settings: Settings, accept: Callable[[Any], Any]) -> Callable[[], Any]:
    """Make picows protocols for the server's settings; ``accept`` is the handshake
    hook (it returns the connection's listener)."""
    interval = float(settings.ping_interval or 0)
    keepalive = interval > 0
    timeout = settings.ping_timeout
    # picows wants reply <= interval; no timeout at all is not an option there.
    reply = interval if timeout is None else min(float(timeout), interval)
    log = logging.getLogger("picows.server")

    def make() -> Any:
        return WSProtocol(
            None,  # host and port: a server protocol has none
            None,  # ws path
            False,  # client side
            accept,
            log,
            True,  # disconnect on exception
            5.0,  # handshake timeout: the front has checked the request already
            keepalive,
            interval if keepalive else 20.0,
            reply if keepalive else 20.0,
            WSAutoPingStrategy.PING_PERIODICALLY,
            False,  # pings are answered by the listener, which counts unread pongs
            settings.max_size,
            None,  # extra headers
            16 * 1024,  # initial read buffer
        )

    return make


def normalize_upgrade(upgrade: Any) -> None:
    """picows compares ``Connection`` / ``Upgrade`` whole; the front has checked them
    token by token (e.g. Firefox's ``Connection: keep-alive, Upgrade``)."""
    upgrade.headers["Connection"] = "upgrade"
    upgrade.headers["Upgrade"] = "websocket"
