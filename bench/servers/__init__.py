"""The servers under test, each run as its own process: ``python -m bench.servers``.

:mod:`bench.servers.__main__` has the command line, the kinds and the line protocol.
One module per family of kinds:

* :mod:`bench.servers.base`: what every kind shares (its lifetime, the stream report);
* :mod:`bench.servers.raw_websockets`, :mod:`bench.servers.raw_picows`: the raw
  WebSocket baselines;
* :mod:`bench.servers.aiosocker_ws`: ``aiosocker.serve`` (async drive, tick drive, picows);
* :mod:`bench.servers.raw_aiortc`, :mod:`bench.servers.aiosocker_rtc`: the WebRTC kinds.

Servers import only the shared modules (:mod:`bench.runner`, :mod:`bench.procs`,
:mod:`bench.rtc_common`), never a client or a figure.
"""
