"""``pyoco-client dlq ...`` and ``workers --state`` against a real gateway process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from worker_support import open_store

from pyoco_server.cli.client import main
from pyoco_server.config import Settings
from pyoco_server.jobs import build_job
from pyoco_server.testing import GatewayProcess


@pytest.fixture
def server(settings: Settings, repo_root, tmp_path) -> Iterator[str]:
    """``pyoco-server up --nats-url ...`` on a free port; its base URL."""
    env = {"PYOCO_LOG_LEVEL": "WARNING", "PYTHONPATH": str(repo_root)}
    gateway = GatewayProcess(tmp_path, settings=settings, env=env, cwd=repo_root)
    try:
        gateway.wait_ready(30)
        yield gateway.url
    finally:
        gateway.stop()


def client(capsys, base: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--server", base, *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def failed_run_with_dead_letter(nc, settings, base: str, reason: str) -> tuple[str, int]:
    js, store = await open_store(nc, settings)
    run_id = httpx.post(f"{base}/runs", json={"flow_name": "flaky"}, timeout=10).json()["run_id"]
    await store.update(run_id, lambda s: {**s, "status": "FAILED", "error": "boom"}, "failed")
    entry = {
        "timestamp": time.time(),
        "reason": reason,
        "error": "RuntimeError: boom\nwith a second line",
        "run_id": run_id,
        "flow_name": "flaky",
        "tag": "default",
        "num_delivered": 1,
        "job": build_job(run_id, "flaky", "default", ["default"], {}),
    }
    ack = await js.publish(settings.dlq_subject("default"), json.dumps(entry).encode())
    return run_id, ack.seq


async def test_dlq_commands(nc, settings, server, capsys):
    first, first_seq = await failed_run_with_dead_letter(nc, settings, server, "execution_error")
    second, second_seq = await failed_run_with_dead_letter(nc, settings, server, "lost")

    code, out, _ = client(capsys, server, "dlq", "list")
    assert code == 0 and [e["seq"] for e in json.loads(out)] == [second_seq, first_seq]
    code, out, _ = client(capsys, server, "dlq", "list", "--reason", "lost")
    assert [e["run_id"] for e in json.loads(out)] == [second]
    code, out, err = client(capsys, server, "dlq", "list", "--output", "table", "--limit", "1")
    header, row = out.splitlines()
    assert header.split()[:4] == ["SEQ", "TIMESTAMP", "REASON", "RUN_ID"]
    assert row.split()[0] == str(second_seq) and "with a second line" in row
    assert f"--before {second_seq}" in err

    code, out, _ = client(capsys, server, "dlq", "show", str(first_seq))
    assert code == 0 and json.loads(out)["job"]["run_id"] == first

    code, out, _ = client(capsys, server, "dlq", "redrive", str(first_seq))
    assert code == 0 and json.loads(out)["attempt"] == 2
    code, _, err = client(capsys, server, "dlq", "redrive", str(first_seq))
    assert code == 1 and "ERR-PYOCO-0029" in err and "already redriven" in err

    code, out, _ = client(capsys, server, "dlq", "redrive-all", "--reason", "lost", "--new-run")
    report = json.loads(out)
    assert code == 0 and report["redriven"] == 1
    assert report["results"][0]["new_run"] is True and report["results"][0]["run_id"] != second

    _, third_seq = await failed_run_with_dead_letter(nc, settings, server, "lost")
    code, out, _ = client(capsys, server, "dlq", "delete", str(third_seq))
    assert code == 0 and json.loads(out) == {"seq": third_seq, "deleted": True}
    code, _, err = client(capsys, server, "dlq", "show", str(third_seq))
    assert code == 1 and "ERR-PYOCO-0028" in err and "dlq list" in err
    assert client(capsys, server, "dlq", "list")[1].strip() == "[]"


async def test_workers_command_filters_by_state(nc, settings, server, capsys):
    js, _ = await open_store(nc, settings)
    kv = await js.key_value(settings.workers_kv_bucket)
    now = time.time()
    for worker_id, state in (("w-1", "IDLE"), ("w-2", "STOPPED")):
        record = {"worker_id": worker_id, "state": state, "tags": [], "heartbeat_at": now}
        await kv.put(worker_id, json.dumps(record).encode())
    code, out, _ = client(capsys, server, "workers", "--exclude-stopped")
    assert code == 0 and [w["worker_id"] for w in json.loads(out)] == ["w-1"]
    code, out, _ = client(capsys, server, "workers", "--state", "STOPPED", "--output", "table")
    assert out.splitlines()[1].split()[:2] == ["w-2", "STOPPED"]
