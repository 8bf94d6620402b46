"""The dispatcher every gateway runs: next due times in memory, fed by a KV watch.

No leader and no per-second scan. Each gateway watches ``def.>`` of the schedules bucket (a
change per create, edit or delete — not per firing), keeps each schedule's definition, its
*cursor* (last nominal time handled) and a heap of next due times, and sleeps until the
earliest. When a schedule is due it plans the slots (:mod:`.planner`), fires them
(:mod:`.firing`: every gateway may fire, the atomic create admits one run per slot), writes
the schedule's state by compare-and-set when it has something to record, and pushes the next
due time. A gateway that lost the create of every slot it planned writes nothing.

Looks at different schedules run concurrently (bounded by :data:`MAX_CONCURRENT_LOOKS`); the
slots of one schedule fire in order. Every failure is contained to its schedule, which is
looked at again after :data:`RETRY_AFTER_SEC`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

from ...log import get_logger
from .firing import FIRED, SKIPPED, TAKEN, Firer, Outcome, outcome_change
from .metrics import ScheduleMetrics
from .planner import plan
from .spec import Policies
from .store import DEF_PREFIX, ScheduleStore, new_state
from .timing import TriggerError, jitter_offset, next_fire

log = get_logger(__name__)

MAX_CONCURRENT_LOOKS = 1024
#: A schedule whose look failed (NATS trouble) is looked at again after this long.
RETRY_AFTER_SEC = 2.0
#: How often buffered slots (overlap ``buffer_one``) check whether the previous run ended.
BUFFER_CHECK_SEC = 1.0
#: Longest single sleep of the loop (bounds the reaction to a stop).
MAX_SLEEP_SEC = 1.0


def policies_of(definition: dict[str, Any]) -> Policies:
    return Policies(**definition.get("policies", {}))


class Dispatcher:
    """Fires the due slots of every schedule this gateway knows (see the module)."""

    def __init__(
        self,
        services: Any,
        metrics: ScheduleMetrics,
        buckets: Callable[[], Awaitable[tuple[Any, Any]]],
        loaded: asyncio.Event,
    ) -> None:
        self.services = services
        self.buckets = buckets
        self.loaded = loaded
        self.settings = services.settings
        self.pm = services.pm
        self.metrics = metrics
        self.store: ScheduleStore | None = None
        self.firer: Firer | None = None
        self.definitions: dict[str, dict[str, Any]] = {}
        self.cursors: dict[str, float] = {}
        self.states: dict[str, tuple[dict[str, Any], int]] = {}
        self.buffered: set[str] = set()
        self._generation: dict[str, int] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._counter = 0
        self._busy: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_LOOKS)
        self.clock = time.time

    # -- bookkeeping -------------------------------------------------------------------------

    def _push(self, schedule_id: str, due: float) -> None:
        generation = self._generation.get(schedule_id, 0)
        self._counter += 1
        heapq.heappush(self._heap, (due, self._counter, schedule_id, generation))
        self._wake.set()

    def _invalidate(self, schedule_id: str) -> None:
        self._generation[schedule_id] = self._generation.get(schedule_id, 0) + 1

    def _update_active(self) -> None:
        self.metrics.active.set(
            sum(
                1
                for schedule_id, definition in self.definitions.items()
                if not definition.get("paused") and schedule_id in self.cursors
            )
        )

    async def load(self, definition: dict[str, Any]) -> None:
        """Follow a new or edited definition: read its state and schedule its next look."""
        assert self.store is not None
        schedule_id = definition["schedule_id"]
        self._invalidate(schedule_id)
        self.definitions[schedule_id] = definition
        state, revision = await self.store.get_state(schedule_id)
        if state is None:
            state, revision = new_state(definition.get("created_at") or self.clock()), 0
        self.states[schedule_id] = (state, revision)
        cursor = max(float(state.get("cursor") or 0.0), self.cursors.get(schedule_id, 0.0))
        if state.get("finished"):
            self.cursors.pop(schedule_id, None)
            self._update_active()
            return
        self.cursors[schedule_id] = cursor
        if state.get("buffered") is not None:
            self.buffered.add(schedule_id)
        if not definition.get("paused"):
            self._schedule_next(schedule_id, cursor)
        self._update_active()

    def forget(self, schedule_id: str) -> None:
        """Stop following a deleted schedule."""
        self._invalidate(schedule_id)
        self.definitions.pop(schedule_id, None)
        self.cursors.pop(schedule_id, None)
        self.states.pop(schedule_id, None)
        self.buffered.discard(schedule_id)
        if self.firer is not None:
            self.firer.forget(schedule_id)
        self._update_active()

    def _schedule_next(self, schedule_id: str, cursor: float) -> None:
        definition = self.definitions[schedule_id]
        try:
            nxt = next_fire(self.pm, definition["spec"], cursor)
        except TriggerError as exc:
            log.warning("schedule_trigger_failed", schedule_id=schedule_id, error=str(exc))
            return
        if nxt is None:
            self._push(schedule_id, self.clock())  # one look records that it is finished
            return
        self._push(schedule_id, nxt)

    # -- the watch ---------------------------------------------------------------------------

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply every change of ``def.>`` until ``stop`` (restarts the watch after errors)."""
        while not stop.is_set():
            watcher = None
            try:
                kv, workflows = await self.buckets()
                self.store = ScheduleStore(kv, workflows)
                self.firer = self.firer or Firer(self.services, self.store, self.metrics)
                self.firer.store = self.store
                watcher = await kv.watch(DEF_PREFIX + ">")
                while not stop.is_set():
                    try:
                        entry = await watcher.updates(timeout=MAX_SLEEP_SEC)
                    except nats.errors.TimeoutError:
                        continue  # no change within the second: look at ``stop`` again
                    if entry is None:
                        self.loaded.set()
                        continue
                    await self._apply(entry)
            except Exception as exc:
                log.warning("schedule_watch_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_AFTER_SEC)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()

    async def _apply(self, entry: Any) -> None:
        schedule_id = entry.key[len(DEF_PREFIX) :]
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.forget(schedule_id)
            return
        try:
            definition = json.loads(entry.value)
            if not isinstance(definition["spec"]["kind"], str):
                raise TypeError("no trigger kind")
        except (ValueError, KeyError, TypeError):
            log.warning("schedule_record_corrupt", key=entry.key)
            return
        try:
            await self.load(definition)
        except Exception as exc:
            log.warning("schedule_load_failed", schedule_id=schedule_id, error=str(exc))
            self.definitions[schedule_id] = definition
            self._push(schedule_id, self.clock() + RETRY_AFTER_SEC)

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sleep until the next due time, look at what is due; until ``stop``."""
        last_buffer_check = 0.0
        while not stop.is_set():
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                _, _, schedule_id, generation = heapq.heappop(self._heap)
                if generation != self._generation.get(schedule_id, 0):
                    continue
                if schedule_id in self._busy:
                    self._push(schedule_id, now + 0.05)
                    continue
                self._start(self._look(schedule_id))
            if self.buffered and now - last_buffer_check >= BUFFER_CHECK_SEC:
                last_buffer_check = now
                for schedule_id in list(self.buffered):
                    if schedule_id not in self._busy:
                        self._start(self._release_buffer(schedule_id))
            delay = MAX_SLEEP_SEC
            if self._heap:
                delay = min(delay, max(0.0, self._heap[0][0] - self.clock()))
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    def _start(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _look(self, schedule_id: str) -> None:
        self._busy.add(schedule_id)
        try:
            async with self._slots:
                await self.look(schedule_id)
        except Exception as exc:
            log.warning("schedule_look_failed", schedule_id=schedule_id, error=str(exc))
            if schedule_id in self.definitions:
                self._push(schedule_id, self.clock() + RETRY_AFTER_SEC)
        finally:
            self._busy.discard(schedule_id)

    async def look(self, schedule_id: str) -> list[Outcome]:
        """Plan and fire what is due for ``schedule_id`` now; schedule the next look."""
        definition = self.definitions.get(schedule_id)
        if definition is None or definition.get("paused") or schedule_id not in self.cursors:
            return []
        assert self.firer is not None and self.store is not None
        generation = self._generation.get(schedule_id, 0)
        now = self.clock()
        policies = policies_of(definition)
        cursor = self.cursors[schedule_id]
        planned = plan(
            self.pm,
            definition["spec"],
            policies,
            cursor,
            now,
            self.settings.schedule_misfire_grace_sec,
        )
        outcomes: list[Outcome] = []
        if planned.fire and policies.overlap != "allow":
            fresh = await self.store.get_state(schedule_id)  # the latest last_run_id
            if fresh[0] is not None:
                self.states[schedule_id] = (fresh[0], fresh[1])
        known = self.states.get(schedule_id)
        for index, nominal in enumerate(planned.fire):
            offset = jitter_offset(schedule_id, nominal, policies.jitter_sec)
            if nominal + offset > self.clock():
                await asyncio.sleep(nominal + offset - self.clock())
            on_time = index >= planned.late_fired
            outcome = await self.firer.fire(
                definition,
                nominal,
                state=known[0] if known else None,
                due_at=nominal + offset if on_time else None,
            )
            outcomes.append(outcome)
            if outcome.kind == FIRED and known is not None:
                known = ({**known[0], "last_run_id": outcome.run_id}, known[1])
        if planned.missed:
            self.metrics.misses.inc(planned.missed)
        if planned.missed_capped:  # the count above is a lower bound
            log.warning(
                "schedule_missed_count_capped", schedule_id=schedule_id, counted=planned.missed
            )
        for outcome in outcomes:
            if outcome.kind == SKIPPED:
                self.metrics.skips.labels(reason=outcome.reason).inc()
            elif outcome.kind == TAKEN:
                self.metrics.slots_taken.inc()
        if generation != self._generation.get(schedule_id, 0):
            return outcomes  # edited or deleted meanwhile: the reload scheduled it
        finished = False
        with contextlib.suppress(TriggerError):
            finished = next_fire(self.pm, definition["spec"], planned.cursor) is None
        await self._record(schedule_id, planned.cursor, planned.missed, outcomes, finished)
        self.cursors[schedule_id] = planned.cursor
        if finished:
            self.cursors.pop(schedule_id, None)
            self._update_active()
        else:
            self._schedule_next(schedule_id, planned.cursor)
        return outcomes

    async def _record(
        self,
        schedule_id: str,
        cursor: float,
        missed: int,
        outcomes: list[Outcome],
        finished: bool,
    ) -> None:
        """Write what this look did to the schedule's state (nothing when there is nothing to
        say: every slot was taken by another gateway)."""
        assert self.store is not None
        if not missed and not finished and all(o.kind == TAKEN for o in outcomes):
            return

        change = outcome_change(cursor, missed, outcomes, finished)
        written = await self.store.change_state(schedule_id, change, self.states.get(schedule_id))
        if written is not None:
            self.states[schedule_id] = written
            if written[0].get("buffered") is not None:
                self.buffered.add(schedule_id)

    async def _release_buffer(self, schedule_id: str) -> None:
        """Fire a buffered slot once the schedule's previous run has ended."""
        assert self.store is not None and self.firer is not None
        self._busy.add(schedule_id)
        try:
            state, revision = await self.store.get_state(schedule_id)
            definition = self.definitions.get(schedule_id)
            if state is None or definition is None or state.get("buffered") is None:
                self.buffered.discard(schedule_id)
                return
            self.states[schedule_id] = (state, revision)
            if await self.firer.previous_active(state.get("last_run_id")):
                return
            nominal = float(state["buffered"])
            outcome = await self.firer.fire(definition, nominal, state=state, check_overlap=False)
            if outcome.kind == TAKEN:  # another gateway released it: only clear the buffer

                def clear(current: dict[str, Any]) -> dict[str, Any] | None:
                    if current.get("buffered") != nominal:
                        return None
                    return {**current, "buffered": None}

                await self.store.change_state(schedule_id, clear, None)
            else:
                cursor = float(state.get("cursor") or 0.0)
                await self._record(schedule_id, cursor, 0, [outcome], False)
            self.buffered.discard(schedule_id)
        except Exception as exc:
            log.warning("schedule_buffer_failed", schedule_id=schedule_id, error=str(exc))
        finally:
            self._busy.discard(schedule_id)
