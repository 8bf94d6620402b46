"""Example flows kept in code, served by ``--flow-resolver examples/hello_flows.py:resolve``.

* ``hello`` — ``greet >> shout``; params: ``name`` (default ``"world"``)
* ``sum`` — ``numbers >> total``; params: ``n`` (default 10)
* ``sleepy`` — one task that sleeps; params: ``seconds`` (default 1)

``resolve`` builds fresh pyoco ``Task`` objects on every call: pyoco's tasks are mutable, so
wiring shared module-level tasks into a new flow per run would leak edges between runs. The
task functions double as YAML callables (``hello_flows:greet``, see ``hello.yaml``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyoco import Flow
from pyoco.core.models import Task


def greet(name: str = "world") -> str:
    return f"hello, {name}"


def shout(greet: str) -> str:
    return greet.upper() + "!"


def numbers(n: int = 10) -> list[int]:
    return list(range(1, n + 1))


def total(numbers: list[int]) -> int:
    return sum(numbers)


def nap(seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return seconds


FLOWS: dict[str, tuple[Callable[..., Any], ...]] = {
    "hello": (greet, shout),
    "sum": (numbers, total),
    "sleepy": (nap,),
}


def resolve(flow_name: str) -> Flow | None:
    """The flow called ``flow_name``, built fresh, or ``None`` when there is none."""
    funcs = FLOWS.get(flow_name)
    if funcs is None:
        return None
    flow = Flow(name=flow_name)
    for func in funcs:
        flow >> Task(func=func, name=func.__name__)
    return flow
