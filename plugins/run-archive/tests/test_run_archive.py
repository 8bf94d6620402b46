"""The run-archive plugin: the archive alone, its query command, and loaded by a real gateway."""

from __future__ import annotations

import time
from pathlib import Path

from pyoco_run_archive import RunArchive
from pyoco_run_archive.cli import main
from pyoco_run_archive.plugin import RunArchivePlugin

from pyoco_server.testing import plugin_listing

RESOLVER = f"{Path(__file__).with_name('archive_flows.py')}:resolve"


def snapshot(run_id: str, status: str, attempt: int = 1, **extra) -> dict:
    return {
        "run_id": run_id,
        "attempt": attempt,
        "status": status,
        "flow_name": "etl",
        "tag": "default",
        "updated_at": time.time(),
        **extra,
    }


def test_a_repeated_delivery_replaces_its_row_and_attempts_are_kept(tmp_path: Path):
    archive = RunArchive(tmp_path / "a.sqlite3")
    archive.add(snapshot("r1", "FAILED", error="boom"))
    archive.add(snapshot("r1", "FAILED", error="boom"))  # at-least-once: the same again
    archive.add(snapshot("r1", "COMPLETED", attempt=2))  # redriven, finished again
    archive.add(snapshot("r2", "COMPLETED", flow_name="other", tenant_id="acme"))
    assert [(r["run_id"], r["attempt"]) for r in archive.query(run_id="r1")] == [
        ("r1", 2),
        ("r1", 1),
    ]
    assert [r["run_id"] for r in archive.query(status="FAILED")] == ["r1"]
    assert [r["run_id"] for r in archive.query(tenant_id="acme")] == ["r2"]
    assert archive.query(since=time.time() + 60) == []


def test_the_plugin_does_nothing_without_a_path(tmp_path: Path):
    RunArchivePlugin(None).pyoco_run_finished(snapshot("r1", "FAILED"))
    assert list(tmp_path.iterdir()) == []


def test_the_query_command_prints_a_table_and_json(tmp_path: Path, capsys):
    path = tmp_path / "a.sqlite3"
    RunArchivePlugin(str(path)).pyoco_run_finished(snapshot("r1", "FAILED", error="boom\nmore"))
    assert main(["--path", str(path), "--status", "FAILED"]) == 0
    line = capsys.readouterr().out.strip()
    assert "FAILED" in line and "r1" in line and line.endswith("boom")
    assert main(["--path", str(path), "--json", "--status", "COMPLETED"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--path", str(tmp_path / "missing.sqlite3")]) == 2


def test_a_real_gateway_archives_each_finished_run_once(pyoco_system_factory, tmp_path: Path):
    path = tmp_path / "archive.sqlite3"
    system = pyoco_system_factory(
        plugins=["run-archive"],
        flow_resolver=RESOLVER,
        env={"PYOCO_RUN_ARCHIVE_PATH": str(path)},
    )
    done = system.run("ok", {"n": 3})
    failed = system.run("boom", {})
    assert (done["status"], failed["status"]) == ("COMPLETED", "FAILED")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and len(RunArchive(path).query()) == 2:
            break
        time.sleep(0.2)
    rows = {r["run_id"]: r for r in RunArchive(path).query()}
    assert set(rows) == {done["run_id"], failed["run_id"]}
    assert (
        rows[failed["run_id"]]["status"] == "FAILED" and "boom" in rows[failed["run_id"]]["error"]
    )
    assert rows[done["run_id"]]["task_records"] == done["task_records"]


def test_listed_with_its_distribution_version():
    listed = {item["name"]: item for item in plugin_listing()}
    assert listed["run-archive"]["distribution"] == "pyoco-run-archive"
    assert listed["run-archive"]["hooks"] == ["pyoco_run_finished"]
