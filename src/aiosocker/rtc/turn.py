"""Short-lived TURN credentials: the TURN REST scheme, as coturn's ``use-auth-secret``
checks them.

The TURN server and the game server share a secret (coturn's ``static-auth-secret``).
For each player the game server makes a user name ``"<expiry>:<user>"`` (a Unix time)
and a password ``base64(HMAC-SHA1(secret, user name))``. The TURN server recomputes the
password from the user name and refuses it once the expiry has passed. Players never see
the secret, and a leaked password stops working after ``ttl`` seconds.

``server_stages(conn, turn=TurnSecret(urls, secret))`` mints them per connection and
sends them to the client in an ICE_SERVERS message before each OFFER.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .envelope import IceServer

__all__ = ["TurnSecret", "turn_credentials"]


def turn_credentials(
    secret: str | bytes, user: str, ttl: float, now: float | None = None
) -> tuple[str, str]:
    """``(username, password)`` valid for ``ttl`` seconds from ``now`` (default: the
    current time): ``"<expiry>:<user>"`` and base64(HMAC-SHA1(secret, username))."""
    key = secret.encode() if isinstance(secret, str) else secret
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user}"
    digest = hmac.new(key, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class TurnSecret:
    """A TURN server that takes TURN REST credentials, and the secret it shares with
    this server. :meth:`mint` makes one player's :class:`IceServer`."""

    urls: str | Sequence[str]
    """The TURN server's URLs, e.g. ``["turn:turn.example.com:3478?transport=udp",
    "turn:turn.example.com:3478?transport=tcp"]``. Browsers try each; aiortc (the
    Python client) uses the first usable one."""
    secret: str | bytes
    """coturn's ``static-auth-secret``. Stays on the server: never sent to a client."""
    ttl: float = 3600.0
    """Seconds the credentials stay valid. They are checked when the client allocates
    a relay (and refreshes it), so a short ttl only needs to cover the handshake; a
    session longer than the ttl keeps its allocation until it next refreshes it."""

    def __post_init__(self) -> None:
        urls = IceServer(self.urls).url_list
        if not urls or not all(
            isinstance(u, str) and u.startswith(("turn:", "turns:")) for u in urls
        ):
            raise ValueError(f"TurnSecret urls must be turn: or turns: URLs, got {self.urls!r}")
        if not self.secret:
            raise ValueError("TurnSecret needs the secret the TURN server was given")
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, (int, float)) or self.ttl <= 0:
            raise ValueError(f"TurnSecret ttl must be a number of seconds > 0, not {self.ttl!r}")

    def mint(self, user: str, now: float | None = None) -> IceServer:
        """Credentials for ``user`` (say, the connection's id), valid ``ttl`` seconds."""
        username, password = turn_credentials(self.secret, user, self.ttl, now)
        return IceServer(IceServer(self.urls).url_list, username, password)

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"TurnSecret(urls={self.urls!r}, secret=<hidden>, ttl={self.ttl!r})"
