"""Fan-in, queue release and cancel cascade, driven by the runs bucket's own writes.

Every write to the runs KV bucket is also a plain NATS message on ``$KV.<bucket>.<run id>``;
each gateway subscribes to it (no consumer, no scan) and reacts to two kinds of snapshots:

* a **terminal child** (it has ``parent_run_id``): noted in the parent (``children_done``)
  with compare-and-set; when that was the last child a WAITING parent waited on, its
  resumption job is published (``Nats-Msg-Id`` per resumption, so several gateways noting the
  same child queue it once) and only then is the parent written PENDING: a gateway killed in
  between leaves a WAITING parent that the sweep resumes, never a PENDING one without a job;
  a waiting parent with children in line gets the freed places;
* a **cancelled parent** (CANCELLING or CANCELLED with ``child_run_ids``): its active children
  that were spawned with ``cancel_with_parent`` (the default) are cancelled through the same
  change function as ``POST /runs/{id}/cancel``; their own writes cascade further down.

A message missed while a gateway was disconnected, or a resumption a killed gateway never
published, is made up for by a sweep every ``PYOCO_RECONCILE_INTERVAL_SEC`` over the WAITING
runs of the run index.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from ...children.changes import RESUME, ChildFinished, ResumeParent, resumable
from ...children.crash_points import BEFORE_RESUME_PUBLISH, BEFORE_RESUME_WRITE, crash_point
from ...children.tree import Continuations, publish_resume, release_queued
from ...log import get_logger
from ...model import CANCELLED, CANCELLING, WAITING, is_terminal
from ...run_store import RunNotFound, RunStore
from ..cancel import cancel_run

if TYPE_CHECKING:
    from ..services import GatewayServices

log = get_logger(__name__)

#: Markers looked for in a write before it is decoded (most writes are not about the tree).
_CHILD_MARKER = b'"parent_run_id":"'
_PARENT_MARKER = b'"child_run_ids":["'
_APPROVAL_MARKER = b'"approval":{'


class ChildJoin:
    """One per gateway: see the module docstring. A Falcon middleware, so it starts and stops
    with the application (after the services it uses)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services
        self.settings = services.settings
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Any = None
        self._stop = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self._stop = asyncio.Event()
        self._loop_task = asyncio.get_running_loop().create_task(self.run(self._stop))

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        self._stop.set()
        if self._loop_task is not None:
            await asyncio.wait({self._loop_task}, timeout=10)

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe (again after a failure) and sweep until ``stop``."""
        while not stop.is_set():
            if self.services.nats.connected:
                try:
                    if self._subscription is None:
                        self._subscription = await self.services.nats.nc.subscribe(
                            f"$KV.{self.settings.runs_kv_bucket}.>", cb=self._on_write
                        )
                    await self.sweep()
                except Exception as exc:
                    log.warning("child_join_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.reconcile_interval_sec)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    async def _on_write(self, msg: Any) -> None:
        data = msg.data or b""
        if (
            _CHILD_MARKER not in data
            and _PARENT_MARKER not in data
            and _APPROVAL_MARKER not in data
        ):
            return
        try:
            snapshot = json.loads(data)
        except ValueError:
            return
        status = snapshot.get("status")
        run_id = snapshot.get("run_id")
        if not isinstance(run_id, str):
            return
        if snapshot.get("parent_run_id") and is_terminal(status):
            self._start(f"join:{run_id}", self.child_finished(snapshot))
        if snapshot.get("child_run_ids") and status in (CANCELLING, CANCELLED):
            self._start(f"cascade:{run_id}", self.cascade(snapshot))
        if (snapshot.get("child_run_ids") or snapshot.get("approval")) and is_terminal(status):
            # A parent or an approved bundle run ended: its continuation is no longer needed.
            self._start(f"forget:{run_id}", self._forget(run_id))

    def _start(self, key: str, work: Any) -> None:
        if key in self._busy:
            work.close()
            return
        self._busy.add(key)

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("child_join_step_failed", key=key, error=f"{type(exc).__name__}: {exc}")
            finally:
                self._busy.discard(key)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self) -> RunStore:
        return await self.services.run_store()

    async def _continuations(self) -> Continuations:
        return Continuations(await self.services.nats.kv(self.settings.spawn_kv_bucket))

    async def child_finished(self, child: dict[str, Any]) -> None:
        """Note ``child`` (terminal) in its parent; resume or release as due."""
        store = await self._store()
        parent_id = child["parent_run_id"]
        change = ChildFinished(child["run_id"], child["status"])
        try:
            parent, _ = await store.update(parent_id, change, "child_finished")
        except RunNotFound:
            return
        if change.decision == RESUME:
            await self.resume(store, parent)
        elif parent.get("status") == WAITING:
            await release_queued(
                self.services.nats, self.settings, store, await self._continuations(), parent_id
            )

    async def resume(self, store: RunStore, parent: dict[str, Any]) -> None:
        """Queue the next resumption of a :func:`resumable` parent, then write it PENDING."""
        parent_id = parent["run_id"]
        current = int(parent.get("resume") or 0)
        crash_point(BEFORE_RESUME_PUBLISH)
        published = await publish_resume(
            self.services.nats, self.settings, await self._continuations(), parent_id, current + 1
        )
        if not published:
            return
        crash_point(BEFORE_RESUME_WRITE)
        with contextlib.suppress(RunNotFound):
            await store.update(parent_id, ResumeParent(current), "resumed")

    async def cascade(self, parent: dict[str, Any]) -> None:
        """Cancel the active children of a cancelled parent that go with it."""
        store = await self._store()
        for child_id in parent.get("child_run_ids") or []:
            try:
                child, _ = await store.get(child_id)
            except RunNotFound:
                continue
            if is_terminal(child.get("status")) or child.get("cancel_with_parent") is False:
                continue
            with contextlib.suppress(RunNotFound):
                await cancel_run(store, child_id, parent.get("cancel_requested_by"))

    async def _forget(self, parent_id: str) -> None:
        await (await self._continuations()).delete(parent_id)

    async def sweep(self) -> None:
        """Make up for missed writes: every WAITING parent whose awaited children are all
        terminal is resumed (also one whose last child was noted by a gateway killed before it
        published the resumption), and freed places go to queued children. Reads one snapshot
        per WAITING parent, plus the children the run index shows terminal but the parent has
        not noted."""
        services = self.services
        if not services.index.loaded:
            return
        store = await self._store()
        for summary in await services.call_index("with_status", WAITING):
            try:
                parent, _ = await store.get(summary["run_id"])
            except RunNotFound:
                continue
            if parent.get("status") != WAITING:
                continue
            if resumable(parent):
                await self.resume(store, parent)
                continue
            await release_queued(
                self.services.nats,
                self.settings,
                store,
                await self._continuations(),
                parent["run_id"],
            )
            done = parent.get("children_done") or {}
            for child_id in parent.get("waiting_on") or []:
                # The index knows every run's status (one indexed lookup): only children it
                # shows terminal are read, so a sweep costs one read per WAITING parent.
                if child_id in done:
                    continue
                if not is_terminal(await services.call_index("status_of", child_id)):
                    continue
                try:
                    child, _ = await store.get(child_id)
                except RunNotFound:
                    continue
                if is_terminal(child.get("status")):
                    await self.child_finished(child)
