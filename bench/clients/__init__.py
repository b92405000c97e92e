"""The load-generating clients, run in the bench process against a server subprocess.

* :mod:`bench.clients.ws`: a cheap WebSocket client on plain blocking sockets;
* :mod:`bench.clients.rtc`: the raw aiortc client and aiosocker's Python rtc client;
* :mod:`bench.clients.browser`: headless Chromium running ``/aiosocker.js``.

Clients import only the shared modules (:mod:`bench.runner`, :mod:`bench.procs`,
:mod:`bench.rtc_common`), never a server or a figure.
"""
