"""The ``websockets`` library (asyncio API): the default listener and the client socket."""

from .listener import WebsocketsListener
from .transport import WebsocketsTransport, ending, pump

__all__ = ["WebsocketsListener", "WebsocketsTransport", "ending", "pump"]
