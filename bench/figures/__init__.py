"""The figures, one module per family of groups. Each ``run*(cfg, results)`` starts the
servers it needs, drives the clients, and puts what it measured into ``results``.

* :mod:`bench.figures.dispatch`: the stage machine in process (group ``dispatch``);
* :mod:`bench.figures.ws`: ``ws_stream``, ``ws_stream_4k``, ``ws_echo``, ``conn_mem``;
* :mod:`bench.figures.rtc`: ``rtc_open``, ``rtc_concurrent``, ``dc``.

Figures import the servers' kind names (as strings), the clients and the shared modules;
only ``bench.__main__`` imports the figures.
"""
