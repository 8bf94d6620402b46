"""Running one job inside its spawn scope (execution-process side).

:func:`run_in_scope` wraps the flow's tasks (replay of recorded outputs, task names for child
ids), makes the scope current for :func:`~.api.spawn`/:func:`~.api.wait`, runs the flow and
turns the outcome of a suspended run into a WAITING one carrying the spawn report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ...config import Settings
from ...model import WAITING
from ..protocol import Outcome
from .api import SpawnScope, activate


def spawn_scope(
    job: dict[str, Any], settings: Settings, send: Callable[[dict[str, Any]], None]
) -> SpawnScope:
    """The spawn scope of ``job`` under ``settings``' limits."""
    return SpawnScope(
        job,
        send,
        max_depth=settings.spawn_max_depth,
        max_children=settings.spawn_max_children,
    )


def run_in_scope(scope: SpawnScope, flow: Any, run: Callable[[], Outcome]) -> Outcome:
    """``run()`` the flow with ``scope`` current; the outcome, WAITING when it suspended.

    A run that suspended while another task failed for real is a failure (the children it
    spawned are still reported, so the host records them).
    """
    restore = scope.install(flow)
    activate(scope)
    try:
        outcome = run()
    finally:
        activate(None)
        restore()
    if not scope.requests and not scope.suspended:
        return outcome
    report = scope.report(outcome.tasks, outcome.task_records)
    failed = any(state == "FAILED" for state in outcome.tasks.values())
    if scope.suspended and not failed and outcome.status != "CANCELLED":
        report["suspended"] = True
        return replace(outcome, status=WAITING, kind=None, error=None, spawn=report)
    report["suspended"] = False
    return replace(outcome, spawn=report)
