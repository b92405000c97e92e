"""aiosocker's benchmarks: socker against the raw transports underneath, in one command.

Run ``python -m bench`` (or ``make bench``) from the repository root; ``--quick`` for a
short run, ``--only NAME[,NAME]`` for some figures. See ``docs/performance.md``.
"""
