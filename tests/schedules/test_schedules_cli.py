"""``pyoco-client schedule ...`` and the 0.7.0 commands against a real gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from schedule_support import shared_env, wait_for
from test_schedules_security import FLOW_YAML


def client(system, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "pyoco-client"), "--server", system.url, *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def json_of(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_schedule_commands_end_to_end(pyoco_system_factory, tmp_path):
    gateway = pyoco_system_factory(
        worker=False, env=shared_env(PYOCO_YAML_ALLOWED_CALLABLES="tests.flows")
    )
    now = int(time.time())
    created = json_of(
        client(
            gateway, "schedule", "create", "--flow-name", "nightly", "--param", "n=3",
            "--interval-seconds", "1", "--start-at", str(now - 60), "--overlap", "allow",
        )
    )  # fmt: skip
    sid = created["schedule_id"]
    assert created["params"] == {"n": 3} and len(created["next_fire_times"]) == 10
    workflow = tmp_path / "flow.yaml"
    workflow.write_bytes(FLOW_YAML)
    legacy = json_of(
        client(
            gateway, "schedule-yaml", "--workflow-file", str(workflow), "--flow-name", "y",
            "--run-at", "2099-01-01T00:00:00+09:00",
        )
    )  # fmt: skip
    assert legacy["schedule_type"] == "once" and legacy["workflow_yaml_sha256"]
    listed = json_of(client(gateway, "schedules"))
    assert {s["schedule_id"] for s in listed} == {sid, legacy["schedule_id"]}
    table = client(gateway, "schedule", "list", "--output", "table")
    assert "SCHEDULE_ID" in table.stdout and sid in table.stdout
    wait_for(lambda: json_of(client(gateway, "schedule-runs", sid)), 5, "runs listed")
    assert json_of(client(gateway, "schedule", "pause", sid))["status"] == "PAUSED"
    assert json_of(client(gateway, "schedule", "resume", sid))["status"] == "ACTIVE"
    updated = json_of(client(gateway, "schedule", "update", sid, "--catchup", "skip"))
    assert updated["catchup"] == "skip"
    window = ["--start", str(now - 50), "--end", str(now - 48)]
    filled = json_of(client(gateway, "schedule", "backfill", sid, *window))
    assert len(filled["created"]) == 3
    assert json_of(client(gateway, "schedule", "get", sid))["counters"]["fired"] >= 3
    assert json_of(client(gateway, "schedule", "delete", sid))["deleted"] is True
    missing = client(gateway, "schedule", "get", sid)
    assert missing.returncode == 1 and "ERR-PYOCO-0046" in missing.stderr
    usage = client(gateway, "schedule", "create", "--flow-name", "x")
    assert usage.returncode == 2 and "exactly one of" in usage.stderr
