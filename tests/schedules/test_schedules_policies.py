"""Catch-up after downtime, overlap policies, pause/resume, backfill and request validation,
on real gateway processes (no worker: runs stay PENDING, that is *active*)."""

from __future__ import annotations

import itertools
import time

import pytest
from schedule_support import call, create, metric, nominals, ok, runs_of, shared_env, wait_for


def test_catchup_after_downtime_follows_each_policy(pyoco_system_factory):
    env = shared_env(PYOCO_SCHEDULE_MISFIRE_GRACE_SEC="1")
    gateway = pyoco_system_factory(worker=False, env=env)
    start = round(time.time()) + 2.0
    every = {"interval_seconds": 1, "start_at": start}
    caught_all = create(gateway, catchup="all", **every)
    skipped = create(gateway, catchup="skip", **every)
    down_at = start + 3.5
    run_at = down_at + 2.0  # a one-shot due while every gateway is down
    once_latest = create(gateway, run_at=run_at, catchup="latest")
    once_skip = create(gateway, run_at=run_at, catchup="skip")
    time.sleep(max(0.0, down_at - time.time()))
    gateway.stop()
    time.sleep(5.0)
    restarted = pyoco_system_factory(worker=False, env=env)
    time.sleep(2.5)

    all_slots = nominals(runs_of(restarted, caught_all))
    assert all_slots == [start + k for k in range(len(all_slots))]  # no gap
    assert len(all_slots) >= 9
    skip_slots = nominals(runs_of(restarted, skipped))
    gaps = [b - a for a, b in itertools.pairwise(skip_slots)]
    assert max(gaps) >= 4, skip_slots  # the downtime was not caught up
    assert ok(call(restarted, "GET", f"/schedules/{skipped}"))["counters"]["missed"] >= 3
    assert nominals(runs_of(restarted, once_latest)) == [round(run_at, 3)]
    assert runs_of(restarted, once_skip) == []
    view = ok(call(restarted, "GET", f"/schedules/{once_skip}"))
    assert view["counters"]["missed"] == 1 and view["status"] == "COMPLETED"
    assert metric(restarted, "pyoco_schedule_misses_total") >= 4


def test_overlap_policies_when_the_previous_run_is_still_active(pyoco_system_factory):
    gateway = pyoco_system_factory(worker=False, env=shared_env())
    every = {"interval_seconds": 1}
    skip = create(gateway, overlap="skip", **every)
    buffered = create(gateway, overlap="buffer_one", **every)
    cancelling = create(gateway, overlap="cancel_previous", **every)
    time.sleep(4.5)

    assert len(runs_of(gateway, skip)) == 1
    assert ok(call(gateway, "GET", f"/schedules/{skip}"))["counters"]["skipped"] >= 2
    view = ok(call(gateway, "GET", f"/schedules/{buffered}"))
    (first,) = runs_of(gateway, buffered)
    assert view["buffered_slot"] is not None and view["counters"]["skipped"] >= 1
    # The previous run ends: the buffered slot fires, once.
    ok(call(gateway, "POST", f"/runs/{first['run_id']}/cancel"))
    wait_for(lambda: len(runs_of(gateway, buffered)) == 2, 5, "buffered slot fired")
    assert view["buffered_slot"] in nominals(runs_of(gateway, buffered))

    runs = sorted(runs_of(gateway, cancelling), key=lambda run: run["run_id"])
    assert len(runs) >= 3
    assert {run["status"] for run in runs[:-2]} == {"CANCELLED"}
    cancelled = ok(call(gateway, "GET", f"/runs/{runs[0]['run_id']}"))
    assert cancelled["cancel_requested_by"] == f"schedule:{cancelling}"
    assert metric(gateway, "pyoco_schedule_skips_total") >= 3


def test_pause_resume_and_idempotent_backfill(pyoco_system_factory):
    gateway = pyoco_system_factory(worker=False, env=shared_env())
    now = round(time.time())
    sid = create(gateway, interval_seconds=1, start_at=now - 30)
    wait_for(lambda: len(runs_of(gateway, sid)) >= 2, 5, "fires")
    paused = ok(call(gateway, "PATCH", f"/schedules/{sid}", json={"paused": True}))
    assert paused["status"] == "PAUSED"
    time.sleep(0.5)
    before = len(runs_of(gateway, sid))
    time.sleep(2.5)
    assert len(runs_of(gateway, sid)) == before  # nothing fires while paused
    resumed_at = time.time()
    assert ok(call(gateway, "PATCH", f"/schedules/{sid}", json={"paused": False}))["status"] == (
        "ACTIVE"
    )
    wait_for(lambda: len(runs_of(gateway, sid)) >= before + 2, 5, "fires again")
    slots = nominals(runs_of(gateway, sid))
    assert not [t for t in slots if resumed_at - 2.0 < t < resumed_at - 0.5]  # not caught up

    window = {"start": now - 25, "end": now - 16}
    first = ok(call(gateway, "POST", f"/schedules/{sid}/backfill", json=window))
    assert first["slots"] == 10 and len(first["created"]) == 10 and first["existing"] == []
    again = ok(call(gateway, "POST", f"/schedules/{sid}/backfill", json=window))
    assert again["created"] == [] and sorted(again["existing"]) == sorted(first["created"])
    assert {now - 25 + k for k in range(10)} <= set(nominals(runs_of(gateway, sid)))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"interval_seconds": 1, "cron": "* * * * *"}, "run_at"),
        ({}, "run_at"),
        ({"interval_seconds": 0.5}, "interval_seconds"),
        ({"cron": "*/1 * * * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Nowhere/City"}, "timezone"),
        ({"cron": "0 25 * * *"}, "cron"),
        ({"run_at": "2020-01-01T00:00:00Z"}, "run_at"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"interval_seconds": 60, "overlap": "sometimes"}, "overlap"),
        ({"interval_seconds": 60, "catchup_window_sec": 1}, "catchup_window_sec"),
        ({"interval_seconds": 60, "jitter_sec": 60}, "jitter_sec"),
        ({"trigger": {"kind": "rrule"}}, "trigger"),
    ],
)
def test_invalid_schedules_are_422_with_the_field(body, field, validation_gateway):
    response = call(validation_gateway, "POST", "/schedules", json={"flow_name": "f", **body})
    assert response.status_code == 422, response.text
    document = response.json()
    assert document["err_id"] == "ERR-PYOCO-0002"
    assert field in {error["field"] for error in document["errors"]}, document


@pytest.fixture(scope="module")
def validation_gateway(pyoco_nats_server, tmp_path_factory):
    from pyoco_server.testing import start_system

    env = shared_env(PYOCO_SCHEDULE_MIN_INTERVAL_SEC="2", PYOCO_SCHEDULES_MAX_PER_TENANT="2")
    system = start_system(
        pyoco_nats_server.url, tmp_path_factory.mktemp("gw"), worker=False, env=env
    )
    yield system
    system.stop()


def test_limits_unknown_schedules_and_bad_edits(validation_gateway):
    gateway = validation_gateway
    first = create(gateway, cron="0 9 * * *", timezone="Asia/Tokyo")
    create(gateway, interval_seconds=3600)
    refused = call(gateway, "POST", "/schedules", json={"flow_name": "f", "interval_seconds": 60})
    assert refused.status_code == 409 and refused.json()["err_id"] == "ERR-PYOCO-0047"
    missing = call(gateway, "GET", "/schedules/nope")
    assert missing.status_code == 404 and missing.json()["err_id"] == "ERR-PYOCO-0046"
    for method, path, body in (
        ("PATCH", f"/schedules/{first}", {"cron": "* * * * *"}),
        ("PATCH", f"/schedules/{first}", {"paused": "yes"}),
        ("PATCH", f"/schedules/{first}", []),
        ("POST", f"/schedules/{first}/backfill", {"start": "2020-01-01T00:00:00Z"}),
        ("POST", f"/schedules/{first}/backfill", {"start": 0, "end": time.time() + 60}),
        ("GET", "/schedules?limit=0", None),
    ):
        response = call(gateway, method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["err_id"] == "ERR-PYOCO-0002"
    view = ok(call(gateway, "GET", f"/schedules/{first}"))
    assert len(view["next_fire_times"]) == 10
    assert all(t.endswith("T00:00:00Z") for t in view["next_fire_times"])  # 09:00 in Tokyo
    assert ok(call(gateway, "DELETE", f"/schedules/{first}")) == {
        "schedule_id": first,
        "deleted": True,
    }
    assert call(gateway, "GET", f"/schedules/{first}").status_code == 404
