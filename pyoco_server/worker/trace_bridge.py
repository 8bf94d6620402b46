"""Bridging pyoco's trace hooks into progress messages (runs inside an execution process).

pyoco calls the hooks on engine and pool threads, and *before* it sets the state a hook
reports (``on_node_end`` fires while the task still reads RUNNING). :class:`TraceBridge`
patches the state the engine is about to set, then pokes :class:`ProgressReporter`, which sends
the run's task states to the host from its own thread, coalesced: nothing during the first
``settle`` seconds of a run (a short run reports only its outcome) and then at most one message
per ``interval``. No trace event ever waits for I/O.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pyoco.core.models import RunContext, TaskRecord, TaskState
from pyoco.trace.backend import TraceBackend

from .protocol import BlockingChannel

#: A run's first progress message is sent no sooner than this after it started.
PROGRESS_SETTLE_SEC = 0.2
#: Minimum time between two progress messages of one run.
PROGRESS_INTERVAL_SEC = 0.25


def record_as_dict(record: TaskRecord) -> dict[str, Any]:
    """A task record as plain data (values JSON cannot hold are sent as their repr)."""
    data: dict[str, Any] = {
        "state": record.state.value,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_ms": record.duration_ms,
        "error": record.error,
        "traceback": record.traceback,
        "inputs": record.inputs,
        "output": record.output,
    }
    if record.artifacts:
        data["artifacts"] = record.artifacts
    return data


def task_states(run_ctx: RunContext) -> tuple[dict[str, str], dict[str, Any]]:
    """Copies of the run's task states and records, safe while engine threads mutate them."""
    for _ in range(5):
        try:
            tasks = {name: state.value for name, state in list(run_ctx.tasks.items())}
            records = {
                name: record_as_dict(record) for name, record in list(run_ctx.task_records.items())
            }
            return tasks, records
        except RuntimeError:  # a dict changed size while we copied it; try again
            continue
    return {}, {}


class ProgressReporter:
    """Sends coalesced ``progress`` messages for the run in progress (one thread per process)."""

    def __init__(
        self,
        channel: BlockingChannel,
        settle: float = PROGRESS_SETTLE_SEC,
        interval: float = PROGRESS_INTERVAL_SEC,
    ) -> None:
        self.channel = channel
        self.settle = settle
        self.interval = interval
        self._cond = threading.Condition()
        self._run: tuple[str, RunContext] | None = None
        self._dirty = False
        self._not_before = 0.0
        #: The reporting thread waits for a change (not for the rate limit): only then does a
        #: change need to wake it. A run shorter than ``settle`` wakes it at most once.
        self._idle = False
        thread = threading.Thread(target=self._loop, name="pyoco-progress", daemon=True)
        thread.start()

    def begin(self, run_id: str, run_ctx: RunContext) -> None:
        with self._cond:
            self._run = (run_id, run_ctx)
            self._dirty = False
            self._not_before = time.monotonic() + self.settle

    def changed(self) -> None:
        """Something about the run changed; report it when the rate limit allows."""
        with self._cond:
            self._dirty = True
            if self._idle:
                self._cond.notify()

    def end(self) -> None:
        """Stop reporting the current run; returns after any progress message in flight."""
        with self._cond:
            self._run = None
            self._dirty = False

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._run is None or not self._dirty:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                delay = self._not_before - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                run_id, run_ctx = self._run
                self._dirty = False
                tasks, records = task_states(run_ctx)
                # Sent while holding the lock, so end() (and the outcome after it) cannot
                # overtake a progress message of the same run.
                try:
                    self.channel.send(
                        {
                            "type": "progress",
                            "run_id": run_id,
                            "tasks": tasks,
                            "task_records": records,
                        }
                    )
                except OSError:
                    return  # the host is gone; the process exits from the reader thread
                self._not_before = time.monotonic() + self.interval


class TraceBridge(TraceBackend):
    """pyoco ``TraceBackend`` for one run: fixes up task states and reports changes."""

    def __init__(self, run_ctx: RunContext, reporter: ProgressReporter) -> None:
        self.run_ctx = run_ctx
        self.reporter = reporter

    def on_flow_start(self, flow_name: str, run_id: str | None = None) -> None:
        self.reporter.changed()

    def on_flow_end(self, flow_name: str) -> None:
        self.reporter.changed()

    def on_node_start(self, node_name: str) -> None:
        self.reporter.changed()

    def on_node_end(self, node_name: str, duration_ms: float) -> None:
        # pyoco marks the task SUCCEEDED only after this hook returns.
        self.run_ctx.tasks[node_name] = TaskState.SUCCEEDED
        record = self.run_ctx.task_records.get(node_name)
        if record is not None:
            record.state = TaskState.SUCCEEDED
            record.duration_ms = duration_ms
        self.reporter.changed()

    def on_node_error(self, node_name: str, error: Exception) -> None:
        # pyoco sets the record FAILED before this hook, the task state only after it.
        self.run_ctx.tasks[node_name] = TaskState.FAILED
        self.reporter.changed()
