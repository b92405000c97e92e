"""The ``aiosocker`` command line: ``aiosocker demo [--host H] [--port P] [--bots N]
[--workers N --redis URL]`` and ``aiosocker run module:setup --workers N --port P
[--host H] [--redis URL] [--log-format text|json]``."""

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
    demo.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default: 1)"
    )
    demo.add_argument("--redis", default=None, help="redis://host:port/db (for --workers > 1)")
    run = commands.add_parser(
        "run",
        help="serve module:setup with several processes on one port",
        description=(
            "Serve the setup function module:setup (the current directory is importable) "
            "with N worker processes sharing one port (SO_REUSEPORT). A worker that dies is "
            "restarted; Ctrl-C or SIGTERM closes every connection with 1001 and stops them. "
            "More than one worker needs --redis, which shares rooms, broadcasts and resume "
            "sessions between them."
        ),
    )
    run.add_argument("target", help="module:setup, the function each connection is set up with")
    run.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    run.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    run.add_argument("--port", type=int, default=8765, help="TCP port (default: 8765)")
    run.add_argument(
        "--redis", default=None, help="redis://host:port/db (needed for --workers > 1)"
    )
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument(
        "--options",
        default=None,
        metavar="MODULE:NAME",
        help="a dict of more serve() options, e.g. origins, allowed_hosts, resume",
    )
    run.add_argument(
        "--transport",
        choices=("websockets", "picows"),
        default="websockets",
        help="server transport",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    if args.workers > 1 and args.redis is None:
        parser.error(
            "--workers > 1 needs --redis URL: rooms, broadcasts and resume sessions must be "
            "shared by the workers (start a Redis and pass e.g. --redis redis://127.0.0.1:6379/0)"
        )
    if args.redis is not None:
        try:
            import redis  # noqa: F401  (the backend's client)
        except ImportError:
            parser.error("--redis needs the redis extra: pip install 'aiosocker[redis]'")
    if args.command == "run":
        from .run import run as run_workers

        return run_workers(
            args.target,
            workers=args.workers,
            host=args.host,
            port=args.port,
            redis=args.redis,
            log_format=args.log_format,
            transport=args.transport,
            options=args.options,
        )
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verbose:
        logging.getLogger("aiosocker").setLevel(logging.INFO)
    if args.bots < 0:
        parser.error("--bots must be 0 or more")
    try:
        import aiortc  # noqa: F401  (the demo's DataChannels)
    except ImportError:
        parser.error("the demo needs the rtc extra: pip install 'aiosocker[rtc]'")
    if args.workers > 1 or args.redis is not None:
        from .demo.app import run_demo_workers

        return run_demo_workers(
            args.host,
            args.port,
            workers=args.workers,
            redis=args.redis,
            bots=args.bots,
            seconds=args.seconds,
            verbose=args.verbose,
        )
    from .demo.app import run_demo

    asyncio.run(run_demo(args.host, args.port, bots=args.bots, seconds=args.seconds))
    return 0
