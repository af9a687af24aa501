"""Run one benchmark arm in a fresh Python process (its own peak RSS, no warm caches) and read its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_worker(script: str, *args: str, label: str) -> Any:
    """``python script *args``; the last stdout line is the arm's result as JSON. Exits on failure."""
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{label} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
