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
#: Flows of several tasks: (task function, number of tasks).
CHAINS = {"chain": (sleep, 20)}


def resolve(flow_name: str) -> Flow | None:
    flow = Flow(name=flow_name)
    if flow_name in CHAINS:
        func, count = CHAINS[flow_name]
        for index in range(count):
            flow >> Task(func=func, name=f"{func.__name__}_{index}")
        return flow
    func = FLOWS.get(flow_name)
    if func is None:
        return None
    flow >> Task(func=func, name=func.__name__)
    return flow
