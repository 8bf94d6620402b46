"""``pyoco-client`` as a real process against a real gateway and worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from worker_support import YAML_FLOW

from pyoco_server.cli.client import UsageError, parse_param
from pyoco_server.embedded import free_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n=3", ("n", 3)),
        ("name=alice", ("name", "alice")),
        ('items=["a", 1]', ("items", ["a", 1])),
        ("flag=true", ("flag", True)),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
        ('quoted="7"', ("quoted", "7")),
    ],
)
def test_param_parsing(text, expected):
    assert parse_param(text) == expected


def test_param_without_equals_is_a_usage_error():
    with pytest.raises(UsageError):
        parse_param("novalue")


def test_submit_get_tasks_list_workers_metrics(cli, tmp_path: Path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("x: 1\nlabel: from-file\n")
    submitted = cli(
        "submit",
        "--flow-name",
        "add",
        "--params-file",
        str(params_file),
        "--params",
        '{"x": 5}',
        "--param",
        "x=9",
        "--param",
        "note=hi",
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]

    got = cli("get", run_id)
    assert json.loads(got.stdout)["params"] == {"x": 9, "label": "from-file", "note": "hi"}

    waited = cli("cancel", "--run-id", run_id, "--wait", "--timeout", "30")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] in ("COMPLETED", "CANCELLED")

    tasks = json.loads(cli("tasks", run_id).stdout)
    assert tasks["run_id"] == run_id

    table = cli("list", "--flow", "add", "--output", "table")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["RUN_ID", "STATUS", "FLOW_NAME"]
    assert any(row.startswith(run_id) for row in rows)
    assert isinstance(json.loads(cli("list", "--limit", "3").stdout), list)

    workers = json.loads(cli("workers").stdout)
    assert workers and {"worker_id", "state"} <= set(workers[0])
    assert "pyoco_runs_total" in cli("metrics").stdout


def test_submit_wait_exit_codes(cli):
    ok = cli("submit", "--flow-name", "add", "--param", "x=1", "--wait", "--timeout", "30")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "COMPLETED"
    assert "COMPLETED" in ok.stderr  # plain progress lines when stderr is not a terminal

    failed = cli("submit", "--flow-name", "boom", "--wait", "--timeout", "30")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["status"] == "FAILED"


def test_submit_yaml_wait(cli, tmp_path: Path):
    workflow = tmp_path / "flow.yaml"
    workflow.write_bytes(YAML_FLOW)
    result = cli("submit-yaml", "--workflow-file", str(workflow), "--flow-name", "y", "--wait")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "COMPLETED"


def test_watch_until_terminal_prints_json_lines(cli):
    run_id = json.loads(cli("submit", "--flow-name", "nap", "--param", "seconds=3").stdout)[
        "run_id"
    ]
    result = cli("watch", run_id, "--until-terminal")
    assert result.returncode == 0, result.stderr
    statuses = [json.loads(line)["status"] for line in result.stdout.splitlines()]
    assert statuses[-1] == "COMPLETED" and len(statuses) >= 2
    status_output = cli("watch", run_id, "--output", "status")
    assert status_output.stdout.startswith("COMPLETED")


def test_unreachable_server_message(cli):
    result = cli("list", server=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "cannot reach" in line and "pyoco-server up" in line and len(line.splitlines()) == 1


def test_not_found_message_names_the_error(cli):
    result = cli("get", "00000000-0000-4000-8000-000000000000")
    assert result.returncode == 1
    assert "ERR-PYOCO-0005" in result.stderr and "Traceback" not in result.stderr


def test_rejected_request_exits_1_and_usage_errors_exit_2(cli, tmp_path: Path):
    rejected = cli("submit", "--flow-name", "add", "--tag", "a.b")
    assert rejected.returncode == 1 and "ERR-PYOCO-0002" in rejected.stderr
    assert cli("submit").returncode == 2  # --flow-name missing
    assert cli("submit", "--flow-name", "x", "--params", "[1]").returncode == 2
    missing = cli("submit-yaml", "--workflow-file", str(tmp_path / "nope.yaml"), "--flow-name", "x")
    assert missing.returncode == 2


def test_help_documents_exit_codes(cli):
    result = cli("--help")
    assert result.returncode == 0
    assert "130" in result.stdout and "PYOCO_API_KEY" in result.stdout
