"""Child runs with real gateway and worker processes: suspension frees the slot, fan-in
resumes the parent, tasks that already succeeded are not executed again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from childkit import WorkerHost, children_of, lines


@pytest.fixture(scope="module")
def system(gateway):
    """The package's gateway with one worker host at concurrency 1 on tag ``fan``."""
    host = WorkerHost(gateway, "solo", ["fan"], 1)
    try:
        host.wait_listed()
        yield gateway
    finally:
        host.stop()


def test_one_worker_at_concurrency_1_runs_a_parent_and_its_5_children(system, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    run_id = system.submit("parent", {"n": 5, "marker_dir": str(markers)}, tag="fan")
    final = system.wait(run_id, timeout=60)

    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["total"]["output"] == {"total": 0 + 1 + 4 + 9 + 16}
    # The parent waited without its slot (the one slot ran the children meanwhile), and the
    # task before the spawning one ran once although the parent was resumed.
    assert lines(markers / "prepare.txt") == 1
    assert lines(markers / "total.txt") == 1
    assert [lines(markers / f"child-{i}.txt") for i in range(5)] == [1] * 5
    expected = [f"{run_id}.fan_out.{i}" for i in range(5)]
    assert final["child_run_ids"] == expected
    children = children_of(system, run_id)
    assert [c["run_id"] for c in children] == expected
    assert {c["status"] for c in children} == {"COMPLETED"}
    assert {c["parent_run_id"] for c in children} == {run_id}
    assert {c["root_run_id"] for c in children} == {run_id}
    assert {c["spawn_depth"] for c in children} == {1}


def test_a_failed_child_fails_the_parent_by_default(system, tmp_path):
    run_id = system.submit("parent", {"n": 3, "fail_at": 1}, tag="fan")
    final = system.wait(run_id, timeout=60)
    assert final["status"] == "FAILED"
    assert f"{run_id}.fan_out.1 (FAILED)" in final["error"]
    assert final["tasks"]["total"] == "PENDING"


def test_continue_policy_collects_the_children_that_completed(system, tmp_path):
    run_id = system.submit("parent", {"n": 4, "fail_at": 2, "policy": "continue"}, tag="fan")
    final = system.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["total"]["output"] == {"total": 0 + 1 + 9}
    statuses = [c["status"] for c in children_of(system, run_id)]
    assert statuses == ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]


def test_the_clients_wait_progress_counts_the_children(system):
    command = [sys.executable, "-m", "pyoco_server.cli.client", "--server", system.url]
    params = '{"n": 3, "child_sleep": 1.0}'  # the parent waits long enough to be seen waiting
    command += ["submit", "--flow-name", "parent", "--params", params, "--tag", "fan"]
    done = subprocess.run(
        [*command, "--wait", "--timeout", "60"], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "COMPLETED"
    assert "0/3 children" in done.stderr  # while the parent waited
    assert "3/3 children" in done.stderr
