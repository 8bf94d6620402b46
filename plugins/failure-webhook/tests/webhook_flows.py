"""Flows for the webhook tests (``--flow-resolver tests/webhook_flows.py:resolve``)."""

from __future__ import annotations

from pyoco import Flow
from pyoco.core.models import Task


def ok() -> str:
    return "fine"


def boom() -> None:
    raise RuntimeError("disk on fire")


def resolve(flow_name: str) -> Flow | None:
    task = {"ok": ok, "boom": boom}.get(flow_name)
    if task is None:
        return None
    flow = Flow(name=flow_name)
    flow >> Task(func=task, name=flow_name)
    return flow
