"""One process of the ``rtc_crowd`` clients: ``python -m bench.clients.rtc_crowd --port P
--clients N --at T``. It sets ICE up as every rtc process does, warms its own aiortc
(``aiosocker.rtc.preload()``, so no client pays its import during the crowd), waits until
wall-clock time ``T``, starts ``N`` socker opens (:func:`bench.clients.rtc.socker_open`)
together, and prints one JSON line: each open's wall-clock completion time (``None``: it
did not open within ``--timeout``) and why the others failed. The peers stay open until
every one is done, then close.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


async def _crowd(port: int, clients: int, at: float, limit_s: float) -> dict[str, Any]:
    import aiosocker.rtc
    import aiosocker.rtc.session  # imported before the clock, as the server

    from ..rtc_common import ice_setup
    from .rtc import socker_open

    ice_setup()
    await aiosocker.rtc.preload()
    await asyncio.sleep(max(0.0, at - time.time()))
    done_at: list[float | None] = [None] * clients

    async def one(i: int) -> Any:
        peer = await socker_open(port)
        done_at[i] = time.time()
        return peer

    tasks = [asyncio.ensure_future(one(i)) for i in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failures: dict[str, int] = {}
    for task in tasks:
        if task in done and task.exception() is None:
            await task.result().close()
        else:
            exc = task.exception() if task in done else TimeoutError("crowd timeout")
            why = f"{type(exc).__name__}: {exc}"[:120]
            failures[why] = failures.get(why, 0) + 1
    return {"done_at": done_at, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients.rtc_crowd")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--at", type=float, required=True, help="wall-clock start (time.time())")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = asyncio.run(_crowd(args.port, args.clients, args.at, args.timeout))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
