"""The spawn API handed to tasks (runs inside an execution process).

A task starts child runs with :func:`spawn` and collects them with :func:`wait`::

    from pyoco_server.worker.children import spawn, wait

    @task
    def fan_out(ctx, items):
        handles = [spawn("square", {"x": item}) for item in items]
        return [child["results"]["square"] for child in wait(handles)]

Nothing here blocks. :func:`spawn` only names the child (a deterministic id) and tells the
worker host, which creates it at once. :func:`wait` returns the children's results when they
are all terminal; otherwise it raises :class:`Suspend`, which ends the run's attempt as
WAITING: the execution slot is freed, and the run is resumed (a new attempt of the same job)
once the children are terminal. On resumption the tasks that had already succeeded are not
executed again: they return their recorded outputs; the waiting task runs again from its
start, calls :func:`spawn` with the same arguments (getting the same ids, so no child is
created twice) and :func:`wait` now returns. See docs/worker.md, "Child runs".
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...model import COMPLETED, is_terminal
from .ids import child_run_id

#: ``on_child_failure`` values of :func:`wait`.
FAIL = "fail"
CONTINUE = "continue"


class Suspend(BaseException):
    """Raised by :func:`wait` while children are running: the run's attempt ends WAITING.

    A ``BaseException`` so that a task's ``except Exception`` (and pyoco's retries and
    ``isolate`` policy) never swallow it.
    """


class SpawnError(Exception):
    """A spawn the settings refuse (depth, count) or used outside a worker's task."""


class ChildRunFailed(Exception):
    """:func:`wait` with ``on_child_failure="fail"``: a child did not complete."""

    def __init__(self, failed: list[dict[str, Any]]) -> None:
        names = ", ".join(f"{child['run_id']} ({child['status']})" for child in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} child run(s) did not complete: {names}{more}")
        self.failed = failed


@dataclass(frozen=True)
class ChildHandle:
    """A spawned child: its run id (deterministic), flow and tag."""

    run_id: str
    flow_name: str
    tag: str


class SpawnScope:
    """The spawn state of the one run an execution process is executing.

    :param job: the job (``spawn_context`` is what the host attached: recorded outputs of the
        tasks that already succeeded, and the results of terminal children).
    :param send: sends a message to the host (thread-safe).
    """

    def __init__(
        self,
        job: dict[str, Any],
        send: Callable[[dict[str, Any]], None],
        *,
        max_depth: int,
        max_children: int,
    ) -> None:
        context = job.get("spawn_context") or {}
        self.run_id: str = job["run_id"]
        self.tag: str | None = job.get("tag")
        self.depth: int = int(job.get("spawn_depth") or 0)
        self.memo: dict[str, Any] = dict(context.get("memo") or {})
        self.children: dict[str, dict[str, Any]] = dict(context.get("children") or {})
        self.known_ids: set[str] = set(context.get("child_run_ids") or ())
        self.max_depth = max_depth
        self.max_children = max_children
        #: Workflow YAML by name, for a run of a spawn bundle (``POST /runs/bundle``).
        self.bundle: dict[str, str] = dict(job.get("bundle_workflows") or {})
        self._send = send
        self._lock = threading.Lock()
        self._local = threading.local()
        self._counters: dict[str, int] = {}
        self._reset_per_call = True
        self.requests: dict[str, dict[str, Any]] = {}
        self.waiting_on: list[str] = []
        self.suspended = False

    # -- wrapping the flow's tasks ----------------------------------------------------------

    def install(self, flow: Any) -> Callable[[], None]:
        """Wrap every task of ``flow``; returns the function that undoes it.

        A task with a recorded output returns it without running (replay); any other task
        runs with this scope knowing its name (for the child ids). In a flow with loops a task
        may run several times under one name, so its outputs are not replayed and its spawn
        counter continues across its runs instead of restarting.
        """
        loops = bool(flow.has_control_flow())
        self._reset_per_call = not loops
        originals: list[tuple[Any, Callable[..., Any]]] = []
        for task in list(flow.tasks):
            originals.append((task, task.func))
            if task.name in self.memo and not loops:
                task.func = _replay(self.memo[task.name])
            else:
                task.func = self._named(task.name, task.func)

        def restore() -> None:
            for task, func in originals:
                task.func = func

        return restore

    def _named(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def run_task(*args: Any, **kwargs: Any) -> Any:
            self._local.task = name
            if self._reset_per_call:
                with self._lock:
                    self._counters[name] = 0  # a retry spawns the same children again
            try:
                return func(*args, **kwargs)
            finally:
                self._local.task = None

        return run_task

    # -- the API ----------------------------------------------------------------------------

    def spawn(
        self,
        flow_name: str,
        params: dict[str, Any] | None = None,
        *,
        tag: str | None = None,
        cancel_with_parent: bool = True,
        workflow_yaml: str | None = None,
    ) -> ChildHandle:
        task = getattr(self._local, "task", None)
        if task is None:
            raise SpawnError("spawn() must be called from a task of the running flow")
        if not isinstance(flow_name, str) or not flow_name:
            raise SpawnError("spawn() needs a flow name")
        if self.depth + 1 > self.max_depth:
            raise SpawnError(
                f"spawn depth {self.depth + 1} exceeds PYOCO_SPAWN_MAX_DEPTH={self.max_depth}"
            )
        with self._lock:
            index = self._counters.get(task, 0)
            self._counters[task] = index + 1
            child_id = child_run_id(self.run_id, task, index)
            total = len(self.known_ids | set(self.requests) | {child_id})
            if total > self.max_children:
                raise SpawnError(
                    f"run {self.run_id} would have {total} children; "
                    f"PYOCO_SPAWN_MAX_CHILDREN={self.max_children}"
                )
            request: dict[str, Any] = {
                "run_id": child_id,
                "flow_name": flow_name,
                "params": dict(params or {}),
                "tag": tag or self.tag,
                "cancel_with_parent": bool(cancel_with_parent),
                "task": task,
            }
            if workflow_yaml is not None:
                request["workflow_yaml"] = workflow_yaml
            self.requests[child_id] = request
        self._send({"type": "spawn", "run_id": self.run_id, "request": request})
        return ChildHandle(child_id, flow_name, request["tag"] or "")

    def spawn_workflow(
        self, workflow: str, params: dict[str, Any], *, cancel_with_parent: bool = True
    ) -> ChildHandle:
        """Spawn ``workflow`` of this run's bundle (the flow name is the workflow's name)."""
        text = self.bundle.get(workflow)
        if text is None:
            raise SpawnError(f"workflow {workflow!r} is not in this run's bundle")
        return self.spawn(
            workflow, params, cancel_with_parent=cancel_with_parent, workflow_yaml=text
        )

    def wait(
        self, handles: Iterable[ChildHandle | str], *, on_child_failure: str = FAIL
    ) -> list[dict[str, Any]]:
        if on_child_failure not in (FAIL, CONTINUE):
            raise ValueError("on_child_failure must be 'fail' or 'continue'")
        ids = [h.run_id if isinstance(h, ChildHandle) else str(h) for h in handles]
        missing = [i for i in ids if not is_terminal((self.children.get(i) or {}).get("status"))]
        if missing:
            with self._lock:
                self.waiting_on.extend(i for i in missing if i not in self.waiting_on)
                self.suspended = True
            raise Suspend(f"waiting for {len(missing)} child run(s)")
        results = [self.children[i] for i in ids]
        failed = [child for child in results if child.get("status") != COMPLETED]
        if failed and on_child_failure == FAIL:
            raise ChildRunFailed(failed)
        return results

    # -- after the run ----------------------------------------------------------------------

    def report(self, tasks: dict[str, str], records: dict[str, Any]) -> dict[str, Any]:
        """What the host needs: requests, what the run waits on, outputs to replay."""
        memo = dict(self.memo)
        for name, state in tasks.items():
            if state == "SUCCEEDED" and name in records:
                memo[name] = records[name].get("output")
        return {
            "requests": list(self.requests.values()),
            "waiting_on": list(self.waiting_on),
            "suspended": self.suspended,
            "memo": memo,
        }


def _replay(value: Any) -> Callable[..., Any]:
    def replay(**_inputs: Any) -> Any:
        return value

    return replay


_current: SpawnScope | None = None
_current_lock = threading.Lock()


def activate(scope: SpawnScope | None) -> None:
    """Make ``scope`` the one :func:`spawn` and :func:`wait` use (``None``: none)."""
    global _current
    with _current_lock:
        _current = scope


def current_scope() -> SpawnScope:
    """The scope of the run being executed; :class:`SpawnError` outside a worker's task."""
    return _scope()


def _scope() -> SpawnScope:
    scope = _current
    if scope is None:
        raise SpawnError("spawn()/wait() work only inside a task executed by pyoco-worker")
    return scope


def spawn(
    flow_name: str,
    params: dict[str, Any] | None = None,
    *,
    tag: str | None = None,
    cancel_with_parent: bool = True,
) -> ChildHandle:
    """Start a child run of ``flow_name`` with ``params`` on ``tag`` (default: the parent's).

    The child's id is deterministic (this run, this task, the how-many-th spawn of the task),
    it belongs to the parent's tenant and it counts against ``PYOCO_SPAWN_MAX_CHILDREN`` and
    ``PYOCO_SPAWN_MAX_DEPTH`` (a refusal raises :class:`SpawnError`); over
    ``PYOCO_SPAWN_MAX_PARALLEL`` it waits in line. ``cancel_with_parent=False`` keeps the child
    running when the parent is cancelled.
    """
    return _scope().spawn(flow_name, params, tag=tag, cancel_with_parent=cancel_with_parent)


def wait(
    handles: Iterable[ChildHandle | str], *, on_child_failure: str = FAIL
) -> list[dict[str, Any]]:
    """The children's results (``run_id, flow_name, status, error, results``), in order.

    While any child is still running this suspends the run (raises :class:`Suspend`; never
    catch it). ``on_child_failure="fail"`` (default) raises :class:`ChildRunFailed` when a
    child ended FAILED or CANCELLED; ``"continue"`` returns those results too.
    """
    return _scope().wait(handles, on_child_failure=on_child_failure)
