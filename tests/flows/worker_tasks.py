"""Task functions for the worker tests: side effects the tests can count."""

from __future__ import annotations

import os
import time
from pathlib import Path


def append_marker(marker: str) -> int:
    """Append one line per execution, so a test can count how often a flow really ran."""
    with open(marker, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return os.getpid()


def wait_for_file(release: str, timeout: float = 60.0) -> str:
    """Block until the test creates ``release``."""
    deadline = time.monotonic() + timeout
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.02)
    return release


def big_output(size: int = 4096) -> str:
    return "x" * size


def noop() -> None:
    return None


def chatty() -> str:
    print("hello from a task")
    return os.getcwd()


def litter() -> dict:
    """What the run's working directory held when the task started, then leave things in it."""
    found = sorted(os.listdir("."))
    artifacts = sorted(os.listdir("artifacts")) if os.path.isdir("artifacts") else None
    Path("left-behind.txt").write_text("x")
    Path("artifacts", "report.txt").write_text("x")
    Path("nested", "deeper").mkdir(parents=True)
    return {"cwd": os.getcwd(), "found": found, "artifacts": artifacts}


def step_one(step_seconds: float = 0.3) -> str:
    time.sleep(step_seconds)
    return "one"


def step_two(step_one: str, step_seconds: float = 0.3) -> str:
    time.sleep(step_seconds)
    return step_one + ",two"


def step_three(step_two: str, step_seconds: float = 0.3) -> str:
    time.sleep(step_seconds)
    return step_two + ",three"


def ignore_cancel(release: str, marker: str) -> str:
    """Block until ``release`` exists, whatever happens to the run (needs a hard stop)."""
    Path(marker).write_text(str(os.getpid()))
    while not Path(release).exists():
        time.sleep(0.02)
    return release


def fails_unless_flag(flag: str) -> str:
    """Fail until the test creates ``flag`` (the cause of the failure is then fixed)."""
    if not Path(flag).exists():
        raise RuntimeError(f"flag file {flag} is missing")
    return flag


def flaky(marker: str, failures: int = 1) -> int:
    """Fail the first ``failures`` executions (counted in ``marker``), then succeed."""
    with open(marker, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    attempt = len(Path(marker).read_text().splitlines())
    if attempt <= failures:
        raise RuntimeError(f"flaky attempt {attempt} fails on purpose")
    return attempt
