"""Flows of the child-run tests: ``--flow-resolver tests/children/child_flows.py:resolve``.

Every task that should run once appends a line to a marker file (``marker_dir`` param), so a
test can count executions across suspensions, resumptions and kill -9.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pyoco import Flow
from pyoco.core.models import Task

from pyoco_server.worker.children import spawn, wait


def _mark(marker_dir: str | None, name: str) -> None:
    if marker_dir:
        with open(Path(marker_dir) / f"{name}.txt", "a") as handle:
            handle.write(f"{os.getpid()}\n")


def prepare(n: int, marker_dir: str | None = None) -> int:
    _mark(marker_dir, "prepare")
    return n


def fan_out(
    prepare: int,
    child_tag: str | None = None,
    fail_at: int = -1,
    policy: str = "fail",
    pause_after: int = -1,
    pause_file: str | None = None,
    child_sleep: float = 0.0,
    detach: bool = False,
    marker_dir: str | None = None,
) -> int:
    """Spawn ``prepare`` children (optionally pausing after ``pause_after`` of them until
    ``pause_file`` exists), wait for them all, return the sum of their squares."""
    _mark(marker_dir, "fan_out")
    handles = []
    for i in range(prepare):
        if i == pause_after and pause_file:
            Path(pause_file + ".reached").write_text("yes")
            while not os.path.exists(pause_file):
                time.sleep(0.05)
        params = {"i": i, "fail": i == fail_at, "sleep": child_sleep, "marker_dir": marker_dir}
        handles.append(spawn("square", params, tag=child_tag, cancel_with_parent=not detach))
    children = wait(handles, on_child_failure=policy)
    return sum(c["results"].get("square", 0) for c in children if c["status"] == "COMPLETED")


def total(fan_out: int, marker_dir: str | None = None) -> dict[str, Any]:
    _mark(marker_dir, "total")
    return {"total": fan_out}


def square(i: int, fail: bool = False, sleep: float = 0.0, marker_dir: str | None = None) -> int:
    _mark(marker_dir, f"child-{i}")
    if sleep:
        time.sleep(sleep)
    if fail:
        raise RuntimeError(f"child {i} fails on purpose")
    return i * i


FLOWS = {
    "parent": (prepare, fan_out, total),
    "square": (square,),
}


def resolve(flow_name: str) -> Flow | None:
    funcs = FLOWS.get(flow_name)
    if not funcs:
        return None
    flow = Flow(name=flow_name)
    for func in funcs:
        flow >> Task(func=func, name=func.__name__)
    return flow


def report(fan: dict[str, Any]) -> int:
    """The square a bundle's spawned child computed."""
    return fan["results"]["square"]
