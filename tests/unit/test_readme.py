"""The README's stage-machine example runs as written (it needs no socket)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_stage_machine_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    example = next(block for block in blocks if block.startswith("from aiosocker import Stages"))
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stateDiagram-v2\n")
    assert 'state "handshake (timeout 5s)" as s1' in done.stdout
