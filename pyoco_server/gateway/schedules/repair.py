"""Repair: a schedule's PENDING run whose job was never published gets its job.

A gateway that dies (or whose publish fails) between the atomic create of a slot's run and
the publish of its job leaves a PENDING run that no worker will ever see. Every
``PYOCO_RECONCILE_INTERVAL_SEC`` each gateway takes the PENDING runs of schedules from its run
index (no scan: the index keeps a set per status) and:

* skips the runs this gateway created and published itself;
* for a run created between :data:`REPAIR_AFTER_SEC` and :data:`SAFE_REPUBLISH_SEC` ago,
  publishes its job again with the same ``Nats-Msg-Id`` (``<run_id>:1``): JetStream's
  duplicate window (120 s) drops it if the original was stored, so there is never a second
  job. Each gateway does this once per run;
* for an older run, publishes only when its tag's work subject holds no message at all (then
  the job cannot be waiting); otherwise it cannot tell, and leaves the run (logged once).

The job is rebuilt from the schedule's definition and the slot, which the run id encodes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from ...log import get_logger
from ...model import PENDING
from ..submit import encoded_job, publish_job
from .firing import job_for

log = get_logger(__name__)

#: A PENDING run younger than this is left to the gateway that is creating it.
REPAIR_AFTER_SEC = 10.0
#: Republishing is always safe this long after the create (inside the 120 s duplicate window).
SAFE_REPUBLISH_SEC = 90.0
#: Run ids remembered as handled (bounded).
MAX_REMEMBERED = 200_000


def nominal_of(run_id: str) -> tuple[str, float] | None:
    """``(schedule_id, nominal)`` encoded in a schedule run id, or ``None``."""
    if not run_id.startswith("s-"):
        return None
    schedule_id, _, slot = run_id[2:].rpartition("-")
    if not schedule_id or not slot.endswith("Z"):
        return None
    whole, _, millis = slot[:-1].partition(".")
    try:
        moment = datetime.strptime(whole, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return schedule_id, moment.timestamp() + (int(millis) / 1000 if millis.isdigit() else 0.0)


class Repair:
    """The repair pass of one gateway (see the module)."""

    def __init__(self, services: Any, dispatcher: Any) -> None:
        self.services = services
        self.dispatcher = dispatcher
        self._handled: OrderedDict[str, None] = OrderedDict()

    def _remember(self, run_id: str) -> None:
        self._handled[run_id] = None
        while len(self._handled) > MAX_REMEMBERED:
            self._handled.popitem(last=False)

    async def repair_once(self) -> list[str]:
        """One pass; returns the run ids whose job was published again."""
        pending = await self.services.query_index("with_status", PENDING)
        now = time.time()
        published: list[str] = []
        empty_subjects: dict[str, bool] = {}
        for summary in pending:
            run_id = summary["run_id"]
            if not summary.get("schedule_id") or run_id in self._handled:
                continue
            firer = self.dispatcher.firer
            if firer is not None and run_id in firer.published:
                continue  # this gateway published it itself
            created = summary.get("submitted_at") or summary.get("updated_at") or now
            age = now - float(created)
            if age < REPAIR_AFTER_SEC:
                continue
            if age > SAFE_REPUBLISH_SEC and not await self._subject_empty(
                summary.get("tag"), empty_subjects
            ):
                self._remember(run_id)
                log.warning("schedule_run_unverifiable", run_id=run_id, age_sec=round(age))
                continue
            if await self._publish(run_id):
                published.append(run_id)
            self._remember(run_id)
        return published

    async def _subject_empty(self, tag: Any, cache: dict[str, bool]) -> bool:
        settings = self.services.settings
        subject = settings.work_subject(tag or settings.default_tag)
        if subject not in cache:
            info = await self.services.nats.js.stream_info(
                settings.work_stream, subjects_filter=subject
            )
            cache[subject] = not (info.state.subjects or {}).get(subject, 0)
        return cache[subject]

    async def _publish(self, run_id: str) -> bool:
        decoded = nominal_of(run_id)
        if decoded is None:
            return False
        schedule_id, nominal = decoded
        definition = self.dispatcher.definitions.get(schedule_id)
        if definition is None:
            return False
        workflow = None
        if definition.get("workflow_yaml_sha256"):
            workflow = await self.dispatcher.store.workflow_yaml(schedule_id)
            if workflow is None:
                return False
        job = job_for(definition, round(nominal, 3), workflow)
        if job["run_id"] != run_id:
            return False
        ack = await publish_job(self.services, job, encoded_job(self.services, job))
        if not getattr(ack, "duplicate", False):
            log.warning("schedule_job_repaired", run_id=run_id, schedule_id=schedule_id)
            return True
        return False
