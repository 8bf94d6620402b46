"""The compare-and-set decisions of the run tree, and deterministic child ids (no NATS)."""

from __future__ import annotations

from pyoco_server.worker.children.changes import (
    CANCEL,
    NOTHING,
    RESUME,
    WAIT,
    ChildFinished,
    SuspendParent,
)
from pyoco_server.worker.children.ids import child_run_id


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


def test_only_the_last_awaited_child_resumes_a_waiting_parent():
    waiting = {"status": "WAITING", "waiting_on": ["a", "b"], "children_done": {}}
    first = ChildFinished("a", "COMPLETED")
    after_first = first(dict(waiting))
    assert first.decision == NOTHING and after_first["status"] == "WAITING"
    second = ChildFinished("b", "FAILED")
    after_second = second(after_first)
    assert second.decision == RESUME and after_second["status"] == "PENDING"
    assert after_second["children_done"] == {"a": "COMPLETED", "b": "FAILED"}
    again = ChildFinished("b", "FAILED")
    assert again(after_second) is None  # a second gateway noting the same child: no write


def test_child_ids_are_deterministic_and_never_collide():
    assert child_run_id("p", "fan", 3) == "p.fan.3" == child_run_id("p", "fan", 3)
    odd = child_run_id("p", "fan out", 0)
    assert odd.startswith("p.t") and odd != child_run_id("p", "fan_out", 0)
    deep = child_run_id("x" * 125, "task", 7)
    assert deep.startswith("c-") and len(deep) <= 128
    assert deep != child_run_id("x" * 125, "task", 8)
