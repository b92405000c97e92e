"""The ``aiosocker`` command line: ``aiosocker demo [--host H] [--port P] [--bots N]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="aiosocker", description="aiosocker: WebSocket connections walked through stages."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve the live multiplayer demo page")
    demo.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    demo.add_argument("--bots", type=int, default=0, help="headless players to add")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.add_argument("-v", "--verbose", action="store_true", help="log connections")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verbose:
        logging.getLogger("aiosocker").setLevel(logging.INFO)
    if args.bots < 0:
        parser.error("--bots must be 0 or more")
    try:
        import aiortc  # noqa: F401  (the demo's DataChannels)
    except ImportError:
        parser.error("the demo needs the rtc extra: pip install 'aiosocker[rtc]'")
    from .demo.app import run_demo

    asyncio.run(run_demo(args.host, args.port, bots=args.bots, seconds=args.seconds))
    return 0
