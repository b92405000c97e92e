"""Backends that share a hub's rooms, broadcasts and resume sessions between processes.

``serve(..., redis=URL)`` and the ASGI app call :func:`attach`, which gives the hub a
:class:`~aiosocker.backends.redis.RedisBackend` (extra ``aiosocker[redis]``) as both its
``backend`` (broadcasts, member counts) and its ``store`` (parked sessions).
"""

from __future__ import annotations

from ..hub import Hub

__all__ = ["attach"]


def attach(hub: Hub) -> None:
    """Give ``hub`` the backend its settings ask for (none: it stays on its own)."""
    url = hub.settings.redis
    if url is None:
        return
    from .redis import RedisBackend  # the redis extra, imported only when asked for

    backend = RedisBackend(url)
    hub.backend = backend
    hub.store = backend
