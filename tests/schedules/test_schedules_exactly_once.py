"""Exactly one run (and one job) per schedule slot with two gateways, one of them SIGKILLed
mid-way; and the repair of a run whose creating gateway died before publishing its job.

The full size of issue 17 (200 schedules x 1 s x 60 s) is ``benchmarks/schedules.py``; this
is the same shape scaled down to fit the suite."""

from __future__ import annotations

import os
import signal
import time

from schedule_support import (
    call,
    create,
    metric,
    nominals,
    ok,
    put_run,
    runs_of,
    shared_env,
    wait_for,
    work_stream_messages,
)

from pyoco_server.gateway.schedules.firing import job_for, schedule_snapshot
from pyoco_server.gateway.schedules.timing import run_id_for

SCHEDULES = 30
SLOTS = 12


def test_two_gateways_fire_every_slot_exactly_once_even_when_one_is_killed(
    pyoco_system_factory, pyoco_nats_server
):
    env = shared_env()
    first = pyoco_system_factory(worker=False, env=env)
    second = pyoco_system_factory(worker=False, env=env)
    start = round(time.time()) + 6.0
    first_slot: dict[str, float] = {}
    for n in range(SCHEDULES):
        body = {"flow_name": "scheduled", "params": {"n": n}, "interval_seconds": 1}
        body.update(start_at=start, end_at=start + SLOTS - 1)
        view = ok(call(first if n % 2 else second, "POST", "/schedules", json=body))
        # On a loaded machine creation may end after start: earlier slots are not due.
        first_slot[view["schedule_id"]] = view["next_fire_epochs"][0]
    ids = list(first_slot)
    assert max(first_slot.values()) < start + SLOTS / 2, "creating the schedules took too long"
    # Kill the second gateway in the middle of the firing period, without warning.
    time.sleep(max(0.0, start + SLOTS / 2 - time.time()))
    os.kill(second.pids["gateway"], signal.SIGKILL)
    expected = {
        sid: [start + k for k in range(SLOTS) if start + k >= first_slot[sid]] for sid in ids
    }
    total = sum(len(slots) for slots in expected.values())

    def missing() -> dict[str, list[float]]:
        gaps = {sid: sorted(set(expected[sid]) - set(nominals(runs_of(first, sid)))) for sid in ids}
        return {sid: slots for sid, slots in gaps.items() if slots}

    deadline = time.monotonic() + SLOTS + 20
    while missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert missing() == {}, f"slots without a run (start {start})"
    for sid in ids:
        assert nominals(runs_of(first, sid)) == expected[sid], sid
    # One job per run: a run whose creator died before publishing is repaired, and no
    # publish (original, retry or repair) ever queued a second job for a slot.
    wait_for(
        lambda: work_stream_messages(pyoco_nats_server.url, env) >= total,
        30,
        "every run has its job",
    )
    time.sleep(2)  # a repair pass or a late firing would add jobs now
    assert work_stream_messages(pyoco_nats_server.url, env) == total
    views = ok(call(first, "GET", "/schedules"))
    assert {view["status"] for view in views} == {"COMPLETED"}
    assert metric(first, "pyoco_schedule_firings_total") >= total / 2
    assert total >= SCHEDULES * SLOTS / 2


def test_a_run_created_without_its_job_gets_the_job_from_the_repair_pass(
    pyoco_system_factory, pyoco_nats_server
):
    env = shared_env()
    system = pyoco_system_factory(worker=False, env=env)
    run_at = time.time() + 3.0
    sid = create(system, run_at=run_at)
    definition_view = ok(call(system, "GET", f"/schedules/{sid}"))
    nominal = definition_view["next_fire_epochs"][0]
    # What a gateway killed between the atomic create and the publish leaves behind.
    definition = {
        "schedule_id": sid,
        "flow_name": "scheduled",
        "tag": definition_view["tag"],
        "tags": definition_view["tags"],
        "params": {},
    }
    job = job_for(definition, nominal, None)
    put_run(pyoco_nats_server.url, env, schedule_snapshot(job))
    assert job["run_id"] == run_id_for(sid, nominal)
    # The dispatcher finds the slot taken and does not publish; the repair pass does.
    wait_for(lambda: metric(system, "pyoco_schedule_slots_taken_total") >= 1, 10, "slot seen taken")
    assert work_stream_messages(pyoco_nats_server.url, env) == 0
    wait_for(lambda: work_stream_messages(pyoco_nats_server.url, env) == 1, 20, "job repaired")
    time.sleep(2.5)  # further repair passes publish nothing more
    assert work_stream_messages(pyoco_nats_server.url, env) == 1
    assert [run["run_id"] for run in runs_of(system, sid)] == [job["run_id"]]
