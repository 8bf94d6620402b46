"""The team's flows. Task functions are plain functions; each builder wires fresh tasks.

* ``greeting`` — ``greet >> shout``; params ``name`` (default ``"world"``).
* ``etl`` — ``extract >> [double, square] >> combine``: a fan-out and a fan-in; params
  ``rows`` (default 5) and ``offset`` (default 0).
* ``always-fails`` — ``prepare >> explode``; ``explode`` raises on purpose, to show how a
  failing flow looks (FAILED snapshot with the task's error, a dead letter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyoco import Flow
from pyoco.core.models import Task

from .registry import FlowRegistry

REGISTRY = FlowRegistry()


def fresh(func: Callable[..., Any]) -> Task:
    """A new ``Task`` for ``func`` (named after it), never shared between flows."""
    return Task(func=func, name=func.__name__)


# -- greeting --------------------------------------------------------------------------------


def greet(name: str) -> str:
    return f"hello, {name}"


def shout(greet: str) -> str:
    return greet.upper() + "!"


@REGISTRY.flow("greeting", defaults={"name": "world"})
def greeting() -> Flow:
    """Greet someone, loudly."""
    flow = Flow(name="greeting")
    flow >> fresh(greet) >> fresh(shout)
    return flow


# -- etl -------------------------------------------------------------------------------------


def extract(rows: int, offset: int) -> list[int]:
    if not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be a non-negative integer, got {rows!r}")
    return [offset + i for i in range(rows)]


def double(extract: list[int]) -> list[int]:
    return [value * 2 for value in extract]


def square(extract: list[int]) -> list[int]:
    return [value * value for value in extract]


def combine(double: list[int], square: list[int]) -> dict[str, int]:
    return {"doubled": sum(double), "squared": sum(square), "rows": len(double)}


@REGISTRY.flow("etl", defaults={"rows": 5, "offset": 0})
def etl() -> Flow:
    """Extract numbers, transform them two ways in parallel, combine the results."""
    flow = Flow(name="etl")
    flow >> fresh(extract) >> [fresh(double), fresh(square)] >> fresh(combine)
    return flow


# -- always-fails ----------------------------------------------------------------------------


def prepare() -> str:
    return "prepared"


def explode(prepare: str) -> None:
    raise RuntimeError(f"always-fails fails on purpose (after {prepare!r})")


@REGISTRY.flow("always-fails")
def always_fails() -> Flow:
    """A flow whose second task always raises."""
    flow = Flow(name="always-fails")
    flow >> fresh(prepare) >> fresh(explode)
    return flow
