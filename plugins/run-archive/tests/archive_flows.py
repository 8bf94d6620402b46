"""Flows for the archive tests (``--flow-resolver tests/archive_flows.py:resolve``)."""

from __future__ import annotations

from pyoco import Flow
from pyoco.core.models import Task


def ok(n: int = 1) -> int:
    return n


def boom() -> None:
    raise RuntimeError("boom")


def resolve(flow_name: str) -> Flow | None:
    task = {"ok": ok, "boom": boom}.get(flow_name)
    if task is None:
        return None
    flow = Flow(name=flow_name)
    flow >> Task(func=task, name=flow_name)
    return flow
