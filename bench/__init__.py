"""aiosocker's benchmarks: socker against the raw transports underneath, in one command.

Run ``python -m bench`` (or ``make bench``) from the repository root; ``--quick`` for a
short run, ``--only NAME[,NAME]`` for some figures. See ``docs/performance.md``.

Layout, imports pointing one way (``tests/unit/test_layers.py`` checks it):

* shared: :mod:`bench.runner` (figure registry, rounds, table, JSON, plot),
  :mod:`bench.procs` (server subprocesses, ``/proc``), :mod:`bench.rtc_common` (ICE);
* :mod:`bench.servers` (each run as ``python -m bench.servers``) and
  :mod:`bench.clients` (the load generators), which import only the shared modules;
* :mod:`bench.figures`, one module per family of groups, using the clients against the
  servers;
* ``python -m bench`` (:mod:`bench.__main__`), which lists the groups.
"""
