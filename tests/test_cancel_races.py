"""Cancel against worker writes on a real KV bucket, with the competing write landing exactly
between a writer's read and its compare-and-set (the interleavings a timing test rarely hits).
"""

from __future__ import annotations

import pytest
from worker_support import make_job, open_store

from pyoco_server.gateway.cancel import CancelRequest, cancel_run
from pyoco_server.jobs import pending_snapshot
from pyoco_server.run_store import RunStore
from pyoco_server.worker.snapshots import Claim, Finish, Progress


class RacingKv:
    """The real KV bucket, except that ``race()`` runs once just before the next ``update``
    (after the writer has read the snapshot it is about to replace)."""

    def __init__(self, kv, race) -> None:
        self.kv = kv
        self.race = race

    async def update(self, key, value, last=None):
        race, self.race = self.race, None
        if race is not None:
            await race()
        return await self.kv.update(key, value, last=last)

    def __getattr__(self, name):
        return getattr(self.kv, name)


async def _run(nc, settings) -> tuple[RunStore, str]:
    _, store = await open_store(nc, settings)
    job = make_job("f")
    await store.create(pending_snapshot(job), job)
    return store, job["run_id"]


def _racing(store: RunStore, race) -> RunStore:
    return RunStore(RacingKv(store.kv, race), store.pm, store.settings)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PENDING", "CANCELLED"),
        ("RUNNING", "CANCELLING"),
        ("CANCELLING", None),
        ("COMPLETED", None),
        ("FAILED", None),
        ("CANCELLED", None),
    ],
)
def test_cancel_request_decides_on_the_status_it_finds(status, expected):
    change = CancelRequest("key-1")
    written = change({"status": status, "tasks": {"a": "PENDING"}})
    if expected is None:
        assert written is None and not change.wrote
        return
    assert written["status"] == expected and change.wrote
    assert written["cancel_requested_by"] == "key-1" and written["cancel_requested_at"] > 0
    if expected == "CANCELLED":
        assert written["end_time"] == written["cancel_requested_at"]
        assert written["tasks"] == {"a": "CANCELLED"}
    assert "cancel_requested_by" not in CancelRequest(None)({"status": status, "tasks": {}})


async def test_a_run_that_completes_under_a_cancel_stays_completed(nc, settings):
    store, run_id = await _run(nc, settings)
    await store.update(run_id, Claim("w1"), "started")

    async def worker_finishes():
        await store.update(run_id, Finish("COMPLETED", worker_id="w1"), "finished")

    snapshot = await cancel_run(_racing(store, worker_finishes), run_id, "key-1")
    assert snapshot["status"] == "COMPLETED"
    stored, _ = await store.get(run_id)
    assert stored["status"] == "COMPLETED" and "cancel_requested_at" not in stored


async def test_a_worker_finishing_under_a_cancel_is_not_left_cancelling(nc, settings):
    store, run_id = await _run(nc, settings)
    await store.update(run_id, Claim("w1"), "started")

    async def gateway_cancels():
        assert (await cancel_run(store, run_id, None))["status"] == "CANCELLING"

    finish = Finish("COMPLETED", worker_id="w1")
    await _racing(store, gateway_cancels).update(run_id, finish, "finished")
    stored, _ = await store.get(run_id)
    assert stored["status"] == "COMPLETED"  # re-evaluated on CANCELLING: the flow had ended
    assert stored["cancel_requested_at"] > 0  # and the cancel request is kept on record


async def test_a_pending_cancel_racing_the_claim_becomes_cancelling(nc, settings):
    store, run_id = await _run(nc, settings)
    claim = Claim("w1")

    async def worker_claims():
        await store.update(run_id, claim, "started")

    snapshot = await cancel_run(_racing(store, worker_claims), run_id, None)
    assert claim.decision == Claim.RUN
    assert snapshot["status"] == "CANCELLING" and snapshot["worker_id"] == "w1"
    progress = Progress("w1")
    await store.update(run_id, progress, "heartbeat")
    assert progress.cancel_requested, "the worker's next heartbeat sees the cancel"


async def test_a_claim_racing_a_pending_cancel_does_not_run(nc, settings):
    store, run_id = await _run(nc, settings)

    async def gateway_cancels():
        assert (await cancel_run(store, run_id, None))["status"] == "CANCELLED"

    claim = Claim("w1")
    await _racing(store, gateway_cancels).update(run_id, claim, "started")
    assert claim.decision == Claim.FINISHED
    stored, _ = await store.get(run_id)
    assert stored["status"] == "CANCELLED" and stored["worker_id"] is None
