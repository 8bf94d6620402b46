"""A disposition plugin can retry a failed attempt: NAK with delay + snapshot back to PENDING.

The worker writes the run back to PENDING (event ``retrying``, the failed attempt's error and
task states kept, the worker released) before it NAKs, so the redelivered job finds a
non-terminal run and executes it again instead of being ACKed unseen.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

from worker_support import WorkerProcess, make_job, open_store, submit, wait_for_run

from pyoco_server.model import FAILED, PENDING, Disposition
from pyoco_server.run_store import RunStore
from pyoco_server.testing import isolated_settings
from pyoco_server.worker.dispositions import checked_disposition
from pyoco_server.worker.snapshots import Requeue

RETRY_PLUGIN = """
from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import Disposition


@hookimpl
def pyoco_failure_disposition(failure, settings):
    if failure.kind == "execution_error" and failure.num_delivered < 3:
        return Disposition("nak", "PENDING", None, delay_sec=2.0)
    return None


@hookimpl
def pyoco_enrich_snapshot(snapshot, job, event):
    if event == "retrying":
        return {"retries_seen": (snapshot.get("retries_seen") or 0) + 1}
    return None
"""


async def test_retry_disposition_requeues_the_run_and_the_redelivery_executes_it(
    nc, nats_server, tmp_path: Path
):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    plugin = tmp_path / "retry_plugin.py"
    plugin.write_text(textwrap.dedent(RETRY_PLUGIN))
    worker = WorkerProcess(settings, tmp_path, "--plugins", str(plugin))
    try:
        await worker.wait_ready(js, settings)
        marker = tmp_path / "attempts.txt"
        run_id = await submit(
            js, store, settings, make_job("flaky_marker", {"marker": str(marker), "failures": 1})
        )
        waiting = await _first_retry(store, run_id)
        assert waiting["status"] == PENDING, waiting
        assert "flaky attempt 1 fails on purpose" in waiting["error"]
        assert waiting["worker_id"] is None
        assert waiting["tasks"] == {"flaky": "FAILED"}  # the task is named after its function
        assert waiting["retries_seen"] == 1

        final = await wait_for_run(store, run_id, timeout=30)
        assert final["status"] == "COMPLETED", final
        assert final["error"] is None
        assert final["worker_id"] == worker.worker_id
        assert len(marker.read_text().splitlines()) == 2
    finally:
        worker.stop()


async def _first_retry(store: RunStore, run_id: str) -> dict:
    """The first snapshot written by the retry, marked by the plugin's ``retries_seen``.

    The submit's PENDING and the first attempt's RUNNING carry no mark; the retry's PENDING
    stays for the 2 s NAK delay, long enough for this poll to see it.
    """
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snapshot, _ = await store.get(run_id)
        if snapshot.get("retries_seen"):
            return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} was never sent back to PENDING")


def test_a_non_terminal_status_is_only_accepted_as_pending_with_nak():
    retry = Disposition("nak", PENDING, None, delay_sec=1.0)
    assert checked_disposition(retry) == retry
    assert checked_disposition(Disposition("ack", FAILED, "x")).snapshot_status == FAILED
    assert checked_disposition(Disposition("nak", None, None)).snapshot_status is None
    # these would leave a run waiting for a job that is gone (or never runs it): FAILED
    assert checked_disposition(Disposition("ack", PENDING)).snapshot_status == FAILED
    assert checked_disposition(Disposition("term", PENDING)).snapshot_status == FAILED
    assert checked_disposition(Disposition("nak", "RUNNING")).snapshot_status == FAILED


def test_requeue_leaves_terminal_and_cancelling_runs_alone():
    change = Requeue(error="boom", tasks={"a": "FAILED"}, task_records={"a": {}})
    for status in ("COMPLETED", "FAILED", "CANCELLED", "CANCELLING"):
        assert change({"status": status, "worker_id": "w"}) is None
    written = change({"status": "RUNNING", "worker_id": "w", "tenant_id": "t", "end_time": 1})
    assert written["status"] == PENDING and written["worker_id"] is None
    assert written["error"] == "boom" and written["tasks"] == {"a": "FAILED"}
    assert written["tenant_id"] == "t" and written["end_time"] is None
