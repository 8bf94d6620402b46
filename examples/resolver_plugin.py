"""A minimal flow-resolver plugin: serves the flow ``countdown`` by name.

Load it without installing anything (both gateway and worker accept a file path):

    pyoco-server up --with-worker --plugins examples/resolver_plugin.py
    pyoco-client submit --flow-name countdown --param start=5

To ship it to a team, put it in a package and declare the entry point (docs/plugins.md walks
through that); ``plugins/flow-registry`` is the grown-up version.
"""

from __future__ import annotations

from typing import Any

from pyoco import Flow
from pyoco.core.models import Task

from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import ResolvedFlow


def count_down(start: int) -> list[int]:
    return list(range(start, -1, -1))


def liftoff(count_down: list[int]) -> str:
    return f"{len(count_down) - 1}… liftoff!"


@hookimpl
def pyoco_resolve_flow(job: dict[str, Any], settings: Any) -> ResolvedFlow | None:
    """``countdown`` built fresh for every job (pyoco tasks are mutable); others: ``None``."""
    if job["flow_name"] != "countdown" or job.get("workflow_yaml"):
        return None
    flow = Flow(name="countdown")
    flow >> Task(func=count_down, name="count_down") >> Task(func=liftoff, name="liftoff")
    return ResolvedFlow(flow, {"start": 3, **(job.get("params") or {})})
