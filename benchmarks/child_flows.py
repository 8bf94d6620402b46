"""Flows of ``benchmarks/children.py``: ``--flow-resolver benchmarks/child_flows.py:resolve``."""

from __future__ import annotations

from pyoco import Flow
from pyoco.core.models import Task

from pyoco_server.worker.children import spawn, wait


def fan(n: int = 100) -> int:
    """Spawn ``n`` no-op children and wait for them."""
    return len(wait([spawn("leaf", {}) for _ in range(n)]))


def leaf() -> None:
    return None


FLOWS = {"fan": fan, "leaf": leaf}


def resolve(flow_name: str) -> Flow | None:
    func = FLOWS.get(flow_name)
    if func is None:
        return None
    flow = Flow(name=flow_name)
    flow >> Task(func=func, name=func.__name__)
    return flow
