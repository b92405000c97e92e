"""The soak test: a real aiosocker server under hours' worth of abuse, in minutes.

``python -m bench.soak`` (``make soak``; ``--short`` is the run ``tests/integration/
test_soak.py`` makes) starts the server in its own process (:mod:`bench.soak.server`) and
client processes (:mod:`bench.soak.clients`): WebSocket clients walking the chain
``hello`` -> ``handshake`` -> ``playing``, rtc clients adding the rtc stages with real aiortc
peers, random abrupt disconnects, and hostile clients. It prints a table and writes JSON
(:mod:`bench.soak.__main__`); the figures are in ``docs/guarantees.md`` (``## Soak``).

What the processes share (the chain's messages, the server's limits, the plans, the
expected close codes) is :mod:`bench.soak.common`. These modules sit in bench's shared
layer: they import :mod:`bench.procs` and :mod:`bench.rtc_common`, nothing above them.
"""
