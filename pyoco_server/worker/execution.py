"""Executing one job inside an execution process: policy, flow resolution, pyoco's Engine.

Everything here runs in a child process that executes one flow at a time, so pyoco's
process-global side effects stay contained: ``sys.stdout``/``sys.stderr`` swaps, ``./artifacts``
(each run gets a fresh working directory that is removed afterwards) and module-level task
objects (the flow is resolved again for every job, never kept).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

from pyoco.core.engine import Engine
from pyoco.core.models import Flow, RunContext, RunStatus, TaskState

from ..config import Settings
from ..errors import PolicyViolation
from ..model import CANCELLED, COMPLETED, FAILED, ResolvedFlow, WorkflowContext
from ..workflow import check_workflow_yaml
from .children.execution import run_in_scope, spawn_scope
from .protocol import Outcome
from .trace_bridge import ProgressReporter, TraceBridge, task_states

_TIMEOUT_MESSAGE = re.compile(r"^Task '(?P<task>.+)' exceeded timeout")


class JobRefused(Exception):
    """The job cannot be executed: its kind is a failure kind such as ``flow_not_found``."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error


def policy_text(violation: PolicyViolation) -> str:
    key = f" ({violation.key})" if violation.key else ""
    return f"workflow rejected by policy: {violation.reason}: {violation.detail}{key}"


def _normalised_status(run_ctx: RunContext, tasks: dict[str, str]) -> str:
    status = run_ctx.status
    if status == RunStatus.CANCELLING:
        # A cancel that arrived during the last task: pyoco returns without finishing the
        # transition. Every task succeeded → the flow completed; otherwise it was cancelled.
        done = bool(tasks) and all(state == TaskState.SUCCEEDED.value for state in tasks.values())
        return COMPLETED if done else CANCELLED
    if status == RunStatus.CANCELLED:
        return CANCELLED
    if status == RunStatus.FAILED:
        return FAILED
    return COMPLETED


class RunDirectory:
    """The working directory of the runs of one execution process, emptied between runs.

    Each run starts in an empty directory (at most an empty ``artifacts/``, which pyoco creates
    for every run anyway). The directory is kept from run to run and only what a run left in
    it is removed: creating and removing a directory per run cost ~3 ms of file system
    metadata writes on the critical path of every run (docs/worker.md, "Throughput").
    """

    #: What pyoco creates in the working directory of every run.
    ARTIFACTS = "artifacts"

    def __init__(self, parent: str) -> None:
        self.parent = parent
        self.path: str | None = None

    def enter(self) -> str:
        """The directory for the next run (a new one if there is none, or a run removed it)."""
        if self.path is None or not os.path.isdir(self.path):
            self.path = tempfile.mkdtemp(prefix="run-", dir=self.parent)
        return self.path

    def leave(self) -> None:
        """Remove what the run left; if that fails, the next run gets a new directory."""
        if self.path is None:
            return
        try:
            with os.scandir(self.path) as entries:
                left = list(entries)
            for entry in left:
                if entry.name == self.ARTIFACTS and _empty_dir(entry):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        except OSError:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def _empty_dir(entry: os.DirEntry[str]) -> bool:
    if not entry.is_dir(follow_symlinks=False):
        return False
    with os.scandir(entry.path) as inside:
        return next(inside, None) is None


class JobExecutor:
    """Turns a job into an :class:`~pyoco_server.worker.protocol.Outcome` (one at a time)."""

    def __init__(
        self, pm: Any, settings: Settings, reporter: ProgressReporter, work_dir: str
    ) -> None:
        self.pm = pm
        self.settings = settings
        self.reporter = reporter
        self.work_dir = work_dir
        self._run_dir = RunDirectory(work_dir)
        self._lock = threading.Lock()
        self._current: tuple[str, RunContext] | None = None
        self._cancel_requested: set[str] = set()

    # -- called from the reader thread ------------------------------------------------------

    def cancel(self, run_id: str) -> None:
        """Ask the run to stop cooperatively (pyoco finishes the tasks already running)."""
        with self._lock:
            self._cancel_requested.add(run_id)
            if self._current is not None and self._current[0] == run_id:
                run_ctx = self._current[1]
                if run_ctx.status == RunStatus.RUNNING:
                    run_ctx.status = RunStatus.CANCELLING

    # -- called from the main thread --------------------------------------------------------

    def execute(self, job: dict[str, Any]) -> Outcome:
        try:
            flow, params = self.resolve(job)
        except JobRefused as refused:
            return Outcome(FAILED, refused.kind, refused.error, ended_at=time.time())
        scope = spawn_scope(job, self.settings, self.reporter.channel.send)
        return run_in_scope(scope, flow, lambda: self.run(job["run_id"], flow, params))

    def check_workflow(self, job: dict[str, Any]) -> None:
        """Run every ``pyoco_check_workflow_yaml`` hook again, on the worker."""
        context = WorkflowContext(
            settings=self.settings,
            flow_name=job["flow_name"],
            tag=job.get("tag"),
            tenant_id=job.get("tenant_id"),
            where="worker",
        )
        try:
            check_workflow_yaml(self.pm, job["workflow_yaml"].encode("utf-8"), context)
        except PolicyViolation as violation:
            raise JobRefused("policy_violation", policy_text(violation)) from None

    def resolve(self, job: dict[str, Any]) -> tuple[Flow, dict[str, Any]]:
        """A fresh flow for the job (``pyoco_resolve_flow``) and the params to run it with."""
        name = job["flow_name"]
        if job.get("workflow_yaml"):
            self.check_workflow(job)
        try:
            result = self.pm.hook.pyoco_resolve_flow(job=job, settings=self.settings)
        except PolicyViolation as violation:
            raise JobRefused("policy_violation", policy_text(violation)) from None
        except Exception as exc:
            raise JobRefused(
                "flow_not_found",
                f"flow {name!r} could not be resolved: {type(exc).__name__}: {exc}",
            ) from None
        if result is None:
            raise JobRefused(
                "flow_not_found",
                f"flow {name!r} not found: no plugin resolved it (is the worker started with "
                "the right --flow-resolver?)",
            )
        if isinstance(result, ResolvedFlow):
            flow, params = result.flow, result.params
        else:
            flow, params = result, job.get("params") or {}
        if not isinstance(flow, Flow):
            raise JobRefused(
                "flow_not_found",
                f"flow {name!r}: the resolver returned {type(flow).__name__}, not a pyoco Flow",
            )
        return flow, dict(params)

    def run(self, run_id: str, flow: Flow, params: dict[str, Any]) -> Outcome:
        run_ctx = RunContext(run_id=run_id)
        with self._lock:
            if run_id in self._cancel_requested:
                run_ctx.status = RunStatus.CANCELLING
            self._current = (run_id, run_ctx)
        engine = Engine(trace_backend=TraceBridge(run_ctx, self.reporter))
        run_dir = self._run_dir.enter()
        stdout, stderr = sys.stdout, sys.stderr
        error: BaseException | None = None
        self.reporter.begin(run_id, run_ctx)
        try:
            os.chdir(run_dir)
            engine.run(flow, params, run_ctx)
        except BaseException as exc:  # a task may even raise SystemExit
            error = exc
        finally:
            self.reporter.end()
            sys.stdout, sys.stderr = stdout, stderr
            os.chdir(self.work_dir)
            self._run_dir.leave()
            with self._lock:
                self._current = None
                self._cancel_requested.discard(run_id)
        return self.outcome(run_ctx, error)

    def outcome(self, run_ctx: RunContext, error: BaseException | None) -> Outcome:
        if error is not None and isinstance(error, TimeoutError):
            # pyoco raises the timeout after the task thread returned and leaves the task
            # SUCCEEDED; the snapshot should show the task that timed out as FAILED.
            match = _TIMEOUT_MESSAGE.match(str(error))
            if match and match.group("task") in run_ctx.tasks:
                name = match.group("task")
                run_ctx.tasks[name] = TaskState.FAILED
                record = run_ctx.ensure_task_record(name)
                record.state = TaskState.FAILED
                record.error = str(error)
        tasks, records = task_states(run_ctx)
        ended_at = run_ctx.end_time or time.time()
        if error is not None:
            text = f"{type(error).__name__}: {error}"
            failed = [name for name, state in tasks.items() if state == TaskState.FAILED.value]
            if failed:
                text = f"task {failed[0]!r} failed: {text}"
            return Outcome(FAILED, "execution_error", text, tasks, records, ended_at)
        status = _normalised_status(run_ctx, tasks)
        if status == FAILED:
            return Outcome(FAILED, "execution_error", "the run failed", tasks, records, ended_at)
        if status == CANCELLED:
            for name, state in tasks.items():
                if state == TaskState.PENDING.value:
                    tasks[name] = TaskState.CANCELLED.value
                    if name in records:
                        records[name]["state"] = TaskState.CANCELLED.value
        return Outcome(status, None, None, tasks, records, ended_at)
