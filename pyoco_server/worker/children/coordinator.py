"""The worker host's side of child runs: prepare a parent's job, create the children its
tasks spawn, and suspend the parent without holding an execution slot.

For each run the host executes:

* :meth:`ChildCoordinator.prepare` (after the claim): a run that has children or is a
  resumption gets ``spawn_context``: the recorded outputs of its finished tasks and the
  results of its terminal children.
* every ``spawn`` message of the execution process creates the child at once (deterministic
  id, KV create, publish with ``Nats-Msg-Id``), or puts it in line when the parent already
  has ``PYOCO_SPAWN_MAX_PARALLEL`` children running.
* :meth:`ChildCoordinator.settle` (after the outcome): a run that suspended itself has its
  continuation written, then goes WAITING (or straight back to PENDING with a resumption job
  when its children are already terminal) and its job is ACKed: the slot is free.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from ...children.changes import CANCEL, RESUME, WAIT, RecordChildIds, SuspendParent
from ...children.tree import (
    Continuations,
    child_summary,
    ensure_child,
    job_for_execution,
    publish_resume,
    release_queued,
)
from ...config import Settings
from ...log import get_logger
from ...model import CANCELLED, COMPLETED, WAITING
from ...run_store import RunNotFound, RunStore
from ..protocol import Outcome
from ..snapshots import Finish

log = get_logger(__name__)


class ParentGone(Exception):
    """A child's parent run no longer exists (deleted): the child must not run."""


@dataclass
class ParentAttempt:
    """Spawn bookkeeping of one attempt of a run on this host."""

    job: dict[str, Any]
    active: set[str] = field(default_factory=set)
    queue: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    creating: set[asyncio.Task[None]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChildCoordinator:
    """Child runs of the jobs one worker host executes."""

    def __init__(self, nats: Any, settings: Settings, store: RunStore, worker_id: str) -> None:
        self.nats = nats
        self.settings = settings
        self.store = store
        self.worker_id = worker_id
        self._attempts: dict[str, ParentAttempt] = {}

    async def continuations(self) -> Continuations:
        return Continuations(await self.nats.kv(self.settings.spawn_kv_bucket))

    # -- before execution -------------------------------------------------------------------

    async def prepare(self, job: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
        """The job to execute: ``job`` with ``spawn_context`` when it has children or is a
        resumption (``job`` itself is not changed). Raises :class:`ParentGone` for a child
        whose parent was deleted."""
        parent_id = job.get("parent_run_id")
        if isinstance(parent_id, str):
            try:
                await self.store.get(parent_id)
            except RunNotFound:
                raise ParentGone(f"parent run {parent_id} was deleted") from None
        attempt = ParentAttempt(job_for_execution(job))
        self._attempts[job["run_id"]] = attempt
        child_ids = list(snapshot.get("child_run_ids") or [])
        if not child_ids and not job.get("resume"):
            return job
        record, _ = await (await self.continuations()).get(job["run_id"])
        done = snapshot.get("children_done") or {}
        queued = list((record or {}).get("queue") or [])
        queued_ids = {request["run_id"] for request in queued}
        attempt.queue = queued
        attempt.active = {c for c in child_ids if c not in done and c not in queued_ids}
        attempt.seen = set(child_ids)

        async def summary(child_id: str) -> tuple[str, dict[str, Any] | None]:
            try:
                child, _ = await self.store.get(child_id)
            except RunNotFound:
                return child_id, None
            return child_id, child_summary(child)

        results = await asyncio.gather(*(summary(child_id) for child_id in done))
        context = {
            "memo": (record or {}).get("memo") or {},
            "children": {child_id: value for child_id, value in results if value is not None},
            "child_run_ids": child_ids,
        }
        return {**job, "spawn_context": context}

    # -- during execution -------------------------------------------------------------------

    def spawned(self, run_id: str, request: dict[str, Any]) -> None:
        """A task of ``run_id`` spawned ``request``: create it (in the background)."""
        attempt = self._attempts.get(run_id)
        if attempt is not None and isinstance(request.get("run_id"), str):
            self.spawned_into(attempt, request)

    async def _start_or_queue(self, attempt: ParentAttempt, request: dict[str, Any]) -> None:
        child_id = request["run_id"]
        async with attempt.lock:
            if len(attempt.active) >= self.settings.spawn_max_parallel:
                attempt.queue.append(request)
                return
            attempt.active.add(child_id)
        try:
            await ensure_child(self.nats, self.settings, self.store, attempt.job, request)
        except Exception as exc:
            attempt.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("child_run_not_created", run_id=child_id, error=attempt.errors[-1])

    async def resume_due(self, run_id: str, resume: int) -> None:
        """Publish resumption ``resume`` of a parent whose suspending host may have died
        between writing it and publishing it (deduplicated by ``Nats-Msg-Id``)."""
        await publish_resume(self.nats, self.settings, await self.continuations(), run_id, resume)

    # -- after execution --------------------------------------------------------------------

    async def end_orphan(
        self, run_id: str, reason: str, latest: tuple[dict[str, Any], int] | None
    ) -> None:
        """End a child whose parent is gone: CANCELLED, without running."""
        finish = Finish(CANCELLED, worker_id=self.worker_id, error=reason)
        await self.store.update(run_id, finish, "finished", None, known=latest)
        log.warning("child_run_orphaned", run_id=run_id, error=reason)

    def forget(self, run_id: str) -> None:
        """Drop the bookkeeping of a run that ended without :meth:`settle`."""
        self._attempts.pop(run_id, None)

    async def settle(
        self, run_id: str, outcome: Outcome, latest: tuple[dict[str, Any], int] | None
    ) -> str | None:
        """Finish the spawn side of an attempt.

        Returns ``None`` when the run is not suspended (the caller writes its terminal
        snapshot as usual), else the decision taken (``wait``, ``resume``, ``cancel``,
        ``nothing``): the caller then only ACKs the job. Raises when a child or the
        continuation could not be written (the caller NAKs; the redelivered job re-attaches).
        """
        attempt = self._attempts.pop(run_id, None)
        report = outcome.spawn
        if attempt is None or report is None:
            return None
        for request in report.get("requests") or []:  # in case a message was lost
            self.spawned_into(attempt, request)
        if attempt.creating:
            await asyncio.gather(*list(attempt.creating))
        if attempt.errors:
            raise RuntimeError(f"child runs not created: {attempt.errors[0]}")
        child_ids = [r["run_id"] for r in report.get("requests") or []]
        continuations = await self.continuations()
        if outcome.status != WAITING:
            if outcome.status == COMPLETED:  # no waiting parent will release them later
                for request in attempt.queue:
                    await ensure_child(self.nats, self.settings, self.store, attempt.job, request)
            if child_ids:
                await self.store.update(run_id, RecordChildIds(child_ids), "children", attempt.job)
            with contextlib.suppress(Exception):
                await continuations.delete(run_id)
            return None
        await continuations.put(
            run_id, {"job": attempt.job, "memo": report.get("memo") or {}, "queue": attempt.queue}
        )
        change = SuspendParent(self.worker_id, child_ids, list(report.get("waiting_on") or []))
        snapshot, _ = await self.store.update(run_id, change, "waiting", attempt.job, known=latest)
        if change.decision == RESUME:
            await publish_resume(
                self.nats, self.settings, continuations, run_id, int(snapshot["resume"])
            )
        elif change.decision == WAIT:
            await release_queued(self.nats, self.settings, self.store, continuations, run_id)
        elif change.decision == CANCEL:
            log.info("parent_cancelled_while_suspending", run_id=run_id)
        log.info("run_suspended", decision=change.decision, waiting_on=len(change.waiting_on))
        return change.decision

    def spawned_into(self, attempt: ParentAttempt, request: dict[str, Any]) -> None:
        """Start or queue ``request`` unless this attempt (or an earlier one) declared it."""
        if request["run_id"] in attempt.seen:
            return
        attempt.seen.add(request["run_id"])
        task = asyncio.get_running_loop().create_task(self._start_or_queue(attempt, request))
        attempt.creating.add(task)
        task.add_done_callback(attempt.creating.discard)
