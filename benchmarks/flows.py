"""Flows for the benchmarks: ``--flow-resolver benchmarks/flows.py:resolve``."""

from __future__ import annotations

import time

from pyoco import Flow
from pyoco.core.models import Task


def noop() -> None:
    return None


def sleep(seconds: float = 0.2) -> float:
    time.sleep(seconds)
    return seconds


FLOWS = {"noop": noop, "sleep": sleep}


def resolve(flow_name: str) -> Flow | None:
    func = FLOWS.get(flow_name)
    if func is None:
        return None
    flow = Flow(name=flow_name)
    flow >> Task(func=func, name=func.__name__)
    return flow
