"""The compare-and-set decisions of the run tree, and deterministic child ids (no NATS)."""

from __future__ import annotations

import pytest

from pyoco_server.children.changes import (
    CANCEL,
    NOTHING,
    RESUME,
    WAIT,
    ChildFinished,
    ResumeParent,
    SuspendParent,
)
from pyoco_server.worker.children.api import ChildRunFailed, SpawnError, SpawnScope, Suspend
from pyoco_server.worker.children.ids import child_run_id
from pyoco_server.worker.snapshots import Claim


def running(**fields):
    return {"run_id": "p", "status": "RUNNING", "worker_id": "w1", **fields}


def test_a_parent_whose_children_are_running_goes_waiting_without_a_worker():
    change = SuspendParent("w1", ["p.t.0", "p.t.1"], ["p.t.0", "p.t.1"])
    written = change(running())
    assert change.decision == WAIT
    assert written["status"] == "WAITING" and written["worker_id"] is None
    assert written["child_run_ids"] == ["p.t.0", "p.t.1"]


def test_children_that_ended_before_the_suspension_resume_the_parent_at_once():
    change = SuspendParent("w1", ["p.t.0"], ["p.t.0"])
    written = change(running(children_done={"p.t.0": "COMPLETED"}, resume=2))
    assert change.decision == RESUME
    assert (written["status"], written["resume"]) == ("PENDING", 3)


def test_a_cancel_that_arrived_meanwhile_ends_the_parent_cancelled():
    change = SuspendParent("w1", ["p.t.0"], ["p.t.0"])
    written = change(running(status="CANCELLING", tasks={"a": "SUCCEEDED", "t": "RUNNING"}))
    assert change.decision == CANCEL
    assert written["status"] == "CANCELLED"
    assert written["tasks"] == {"a": "SUCCEEDED", "t": "CANCELLED"}


def test_a_suspension_by_a_worker_that_lost_the_run_writes_nothing():
    change = SuspendParent("w1", ["p.t.0"], ["p.t.0"])
    assert change(running(worker_id="w2")) is None
    assert change.decision == NOTHING


def test_only_the_last_awaited_child_makes_a_waiting_parent_resumable():
    waiting = {"status": "WAITING", "waiting_on": ["a", "b"], "children_done": {}}
    first = ChildFinished("a", "COMPLETED")
    after_first = first(dict(waiting))
    assert first.decision == NOTHING and after_first["status"] == "WAITING"
    second = ChildFinished("b", "FAILED")
    after_second = second(after_first)
    # Still WAITING: the resumption job is published before the parent is written PENDING.
    assert second.decision == RESUME and after_second["status"] == "WAITING"
    assert after_second["children_done"] == {"a": "COMPLETED", "b": "FAILED"}
    again = ChildFinished("b", "FAILED")
    assert again(after_second) is None  # a second gateway noting the same child: no write


def test_a_published_resumption_is_written_pending_once():
    ready = {"status": "WAITING", "waiting_on": ["a"], "children_done": {"a": "COMPLETED"}}
    first = ResumeParent(0)
    written = first(dict(ready, resume=0))
    assert first.applied and (written["status"], written["resume"]) == ("PENDING", 1)
    assert ResumeParent(0)(written) is None  # a second gateway: already resumed


def test_a_worker_runs_a_resumption_job_that_arrives_before_the_pending_write():
    ready = {"status": "WAITING", "waiting_on": ["a"], "children_done": {"a": "COMPLETED"}}
    claim = Claim("w1", resume=1)
    written = claim(dict(ready, resume=0))
    assert claim.decision == Claim.RUN and written["status"] == "RUNNING"
    assert written["resume"] == 1
    # ... and the gateway's PENDING write that follows changes nothing.
    assert ResumeParent(0)(written) is None
    # An old attempt's job, or a parent still waiting on a child, is not run.
    stale = Claim("w1", resume=0)
    assert stale(dict(ready, resume=0)) is None and stale.decision == Claim.FINISHED
    early = Claim("w1", resume=1)
    assert early(dict(ready, resume=0, children_done={})) is None


def test_child_ids_are_deterministic_and_never_collide():
    assert child_run_id("p", "fan", 3) == "p.fan.3" == child_run_id("p", "fan", 3)
    odd = child_run_id("p", "fan out", 0)
    assert odd.startswith("p.t") and odd != child_run_id("p", "fan_out", 0)
    deep = child_run_id("x" * 125, "task", 7)
    assert deep.startswith("c-") and len(deep) <= 128
    assert deep != child_run_id("x" * 125, "task", 8)


def _scope(depth: int = 0, max_depth: int = 2, max_children: int = 2) -> tuple[SpawnScope, list]:
    sent: list = []
    job = {"run_id": "p", "tag": "t", "spawn_depth": depth}
    return SpawnScope(job, sent.append, max_depth=max_depth, max_children=max_children), sent


def test_spawns_over_the_count_or_depth_limit_are_refused():
    scope, sent = _scope()
    spawn_two_then_three = scope._named("fan", lambda: [scope.spawn("c") for _ in range(3)])
    with pytest.raises(SpawnError, match="PYOCO_SPAWN_MAX_CHILDREN=2"):
        spawn_two_then_three()
    assert [m["request"]["run_id"] for m in sent] == ["p.fan.0", "p.fan.1"]

    deep, _ = _scope(depth=2)
    with pytest.raises(SpawnError, match="PYOCO_SPAWN_MAX_DEPTH=2"):
        deep._named("fan", lambda: deep.spawn("c"))()


def test_wait_suspends_until_every_child_is_terminal():
    scope, _ = _scope()
    scope.children = {"p.fan.0": {"run_id": "p.fan.0", "status": "COMPLETED", "results": {}}}
    both = scope._named("fan", lambda: scope.wait([scope.spawn("c"), scope.spawn("c")]))
    with pytest.raises(Suspend):
        both()
    assert scope.suspended and scope.waiting_on == ["p.fan.1"]
    scope.children["p.fan.1"] = {"run_id": "p.fan.1", "status": "FAILED", "results": {}}
    with pytest.raises(ChildRunFailed, match=r"p\.fan\.1 \(FAILED\)"):
        both()


def test_an_approval_job_that_arrives_before_the_approval_write_runs_and_records_it():
    claim = Claim("w1", approved_by="key-1")
    written = claim({"run_id": "b", "status": "PENDING_APPROVAL", "approval": {"state": "pending"}})
    assert claim.decision == Claim.RUN and written["status"] == "RUNNING"
    assert written["approval"]["state"] == "approved" and written["approval"]["by"] == "key-1"
    rejected = Claim("w1", approved_by="key-1")
    assert rejected({"run_id": "b", "status": "CANCELLED"}) is None  # a rejection won
    assert rejected.decision == Claim.FINISHED
