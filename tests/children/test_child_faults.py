"""Child runs under faults: kill -9 of the parent's worker mid-spawn and mid-wait, cancel
cascade, many parents on several workers."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from childkit import MAX_PARALLEL, children_of, lines


def _wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def _exists(system, run_id: str) -> bool:
    try:
        system.client.get_run(run_id)
    except Exception:
        return False
    return True


def _tree(system, root_id: str) -> list[str]:
    """Every stored run whose id contains ``root_id`` (the root and its descendants)."""
    runs = system.client._json("GET", "/runs", params={"q": root_id, "limit": 200})
    return sorted(run["run_id"] for run in runs)


@pytest.mark.slow
def test_kill9_mid_spawn_still_gives_exactly_the_declared_children(gateway, hosts, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    pause = tmp_path / "go"
    victim = hosts("victim", ["k"])
    params = {"n": 10, "pause_after": 3, "pause_file": str(pause), "marker_dir": str(markers)}
    run_id = gateway.submit("parent", params, tag="k")
    _wait_for(lambda: (tmp_path / "go.reached").exists(), what="the first spawns")
    hosts("rescuer", ["k"])
    _wait_for(lambda: _exists(gateway, f"{run_id}.fan_out.2"), what="3 children created")
    victim.kill9()
    pause.write_text("go")

    final = gateway.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["total"]["output"] == {"total": sum(i * i for i in range(10))}
    expected = [f"{run_id}.fan_out.{i}" for i in range(10)]
    assert final["child_run_ids"] == expected
    assert _tree(gateway, run_id) == sorted([run_id, *expected])
    assert all(lines(markers / f"child-{i}.txt") >= 1 for i in range(10))


@pytest.mark.slow
def test_kill9_mid_wait_the_parent_completes_without_running_finished_tasks_again(
    gateway, hosts, tmp_path
):
    markers = tmp_path / "markers"
    markers.mkdir()
    victim = hosts("victim", ["w"])
    params = {"n": 4, "child_sleep": 1.0, "marker_dir": str(markers)}
    run_id = gateway.submit("parent", params, tag="w")
    gateway.wait(run_id, timeout=30, statuses={"WAITING"})
    hosts("rescuer", ["w"])
    _wait_for(
        lambda: any(c.get("worker_id") == "victim" for c in children_of(gateway, run_id)),
        what="a child on the victim",
    )
    victim.kill9()

    final = gateway.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["total"]["output"] == {"total": 0 + 1 + 4 + 9}
    assert len(final["child_run_ids"]) == 4
    assert len(_tree(gateway, run_id)) == 1 + 4
    assert lines(markers / "prepare.txt") == 1
    assert lines(markers / "total.txt") == 1


def test_cancelling_a_waiting_parent_cancels_its_children(gateway, hosts, tmp_path):
    hosts("one", ["c"])
    run_id = gateway.submit("parent", {"n": 3, "child_sleep": 30.0}, tag="c")
    gateway.wait(run_id, timeout=30, statuses={"WAITING"})
    _wait_for(lambda: any(c["status"] == "RUNNING" for c in children_of(gateway, run_id)))

    answer = gateway.client.cancel_run(run_id)
    assert answer["status"] == "CANCELLED"
    for child_id in answer["child_run_ids"]:
        assert gateway.wait(child_id, timeout=30)["status"] == "CANCELLED"


def test_children_spawned_detached_outlive_a_cancelled_parent(gateway, hosts, tmp_path):
    hosts("one", ["d"], concurrency=2)
    run_id = gateway.submit("parent", {"n": 2, "child_sleep": 1.0, "detach": True}, tag="d")
    gateway.wait(run_id, timeout=30, statuses={"WAITING"})
    assert gateway.client.cancel_run(run_id)["status"] == "CANCELLED"
    for child in children_of(gateway, run_id):
        assert gateway.wait(child["run_id"], timeout=30)["status"] == "COMPLETED"


def test_children_over_the_parallel_limit_wait_in_line(gateway, hosts):
    hosts("wide", ["p"], concurrency=5)
    run_id = gateway.submit("parent", {"n": 7, "child_sleep": 0.4}, tag="p")
    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        snapshot = gateway.get(run_id)
        if snapshot["status"] in ("COMPLETED", "FAILED"):
            break
        running = [c for c in children_of(gateway, run_id) if c["status"] == "RUNNING"]
        most = max(most, len(running))
        time.sleep(0.05)
    assert snapshot["status"] == "COMPLETED", snapshot
    assert snapshot["task_records"]["total"]["output"] == {"total": 91}
    assert 2 <= most <= MAX_PARALLEL


@pytest.mark.slow
def test_10_parents_with_10_children_each_on_2_workers_at_concurrency_2(gateway, hosts):
    hosts("a", ["m"], concurrency=2)
    hosts("b", ["m"], concurrency=2)
    parents = [gateway.submit("parent", {"n": 10}, tag="m") for _ in range(10)]
    for run_id in parents:
        final = gateway.wait(run_id, timeout=90)
        assert final["status"] == "COMPLETED", final
        assert final["task_records"]["total"]["output"] == {"total": 285}
    for run_id in parents:
        assert len(_tree(gateway, run_id)) == 1 + 10


def test_a_child_whose_parent_was_deleted_never_runs(gateway, hosts, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    hosts("spawner", ["o"])
    params = {"n": 2, "child_tag": "orphans", "marker_dir": str(markers)}
    run_id = gateway.submit("parent", params, tag="o")
    gateway.wait(run_id, timeout=30, statuses={"WAITING"})

    async def delete_parent() -> None:
        client = await nats.connect(gateway.nats_url)
        try:
            runs = await client.jetstream().key_value(gateway.env["PYOCO_RUNS_KV_BUCKET"])
            await runs.purge(run_id)
        finally:
            await client.close()

    asyncio.run(delete_parent())
    hosts("orphan-runner", ["orphans"])
    for index in range(2):
        child = gateway.wait(f"{run_id}.fan_out.{index}", timeout=30)
        assert child["status"] == "CANCELLED"
        assert "was deleted" in child["error"]
    assert lines(markers / "child-0.txt") == lines(markers / "child-1.txt") == 0


def test_one_worker_at_concurrency_1_with_two_tags_runs_children_on_its_second_tag(
    gateway, hosts, tmp_path
):
    """The default worker (one slot) serving two tags: the parent waits on ``two-a`` without
    its slot while its children run on ``two-b``, the worker's other tag."""
    hosts("two-tags", ["two-a", "two-b"])
    markers = tmp_path / "markers"
    markers.mkdir()
    params = {"n": 3, "child_tag": "two-b", "marker_dir": str(markers)}
    run_id = gateway.submit("parent", params, tag="two-a")
    final = gateway.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["total"]["output"] == {"total": 0 + 1 + 4}
    children = [gateway.get(child) for child in final["child_run_ids"]]
    assert [c["tag"] for c in children] == ["two-b"] * 3
    assert {c["status"] for c in children} == {"COMPLETED"}
    assert lines(markers / "prepare.txt") == 1
