"""The task behind a ``spawn: <workflow>`` task of a spawn bundle (``POST /runs/bundle``).

The gateway rewrites every ``spawn:`` task of a bundle into a call of :func:`spawn_child`
(:data:`SPAWN_CALLABLE`) whose reserved inputs name the target workflow and the policies;
the other inputs (resolved by pyoco as usual: ``$ctx.params.x``, ``$node.t.output``) become
the child's params. It spawns one child run of that workflow, waits for it (suspending the
parent) and returns the child's task outputs.
"""

from __future__ import annotations

from typing import Any

from ...children.spawn_task import CANCEL_INPUT, FAILURE_INPUT, WORKFLOW_INPUT
from .api import current_scope, wait

#: The ``callable`` a ``spawn:`` task becomes (always accepted by the built-in YAML policy:
#: it can only start workflows of the run's own, already checked, bundle).
#: Reserved inputs of the rewritten task.


def spawn_child(**inputs: Any) -> dict[str, Any]:
    """Spawn the bundle workflow named by ``_spawn_workflow`` and return its outputs."""
    workflow = str(inputs.pop(WORKFLOW_INPUT))
    policy = str(inputs.pop(FAILURE_INPUT, "fail"))
    cancel_with_parent = bool(inputs.pop(CANCEL_INPUT, True))
    handle = current_scope().spawn_workflow(workflow, inputs, cancel_with_parent=cancel_with_parent)
    [child] = wait([handle], on_child_failure=policy)
    return {"run_id": child["run_id"], "status": child["status"], "results": child["results"]}
