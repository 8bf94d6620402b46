"""``--flow-resolver tests/flows/resolver.py:resolve`` for the worker tests.

Every call builds fresh ``Task`` objects, because pyoco's task objects are mutable.
"""

from __future__ import annotations

from typing import Any

from pyoco import Flow
from pyoco.core.models import Task

from tests.flows import sample_tasks, worker_tasks


def _flow(name: str, *funcs: Any) -> Flow:
    flow = Flow(name=name)
    for func in funcs:
        flow >> Task(func=func, name=func.__name__)
    return flow


FLOWS = {
    "add": (sample_tasks.add_one, sample_tasks.to_text),
    "boom": (sample_tasks.boom,),
    "nap": (sample_tasks.nap,),
    "noop": (worker_tasks.noop,),
    "marker": (worker_tasks.append_marker,),
    "marker_nap": (worker_tasks.append_marker, sample_tasks.nap),
    "marker_wait": (worker_tasks.append_marker, worker_tasks.wait_for_file),
    "marker_wait_nap": (worker_tasks.append_marker, worker_tasks.wait_for_file, sample_tasks.nap),
    "big": (worker_tasks.big_output,),
    "chatty": (worker_tasks.chatty,),
    "litter": (worker_tasks.litter,),
    "steps": (worker_tasks.step_one, worker_tasks.step_two, worker_tasks.step_three),
    "stubborn": (worker_tasks.ignore_cancel, sample_tasks.nap),
    "flaky": (worker_tasks.fails_unless_flag,),
    "flaky_marker": (worker_tasks.flaky,),
}


def resolve(flow_name: str) -> Flow | None:
    funcs = FLOWS.get(flow_name)
    return _flow(flow_name, *funcs) if funcs else None
