"""``python -m socker demo``."""

from .cli import main

raise SystemExit(main())
