"""``python -m aiosocker demo``."""

from .cli import main

raise SystemExit(main())
