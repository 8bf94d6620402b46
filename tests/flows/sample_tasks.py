"""Task functions that test workflows (YAML callables and code-defined flows) use."""

from __future__ import annotations

import os
import time
from pathlib import Path


def add_one(x: int = 0) -> int:
    return x + 1


def to_text(add_one: int) -> str:
    return f"v={add_one}"


def boom() -> None:
    raise RuntimeError("task exploded on purpose")


def nap(seconds: float = 0.2) -> float:
    time.sleep(seconds)
    return seconds


def touch_marker(marker: str) -> str:
    Path(marker).write_text(str(os.getpid()))
    return marker
