"""``PyocoHttpClient`` against a real gateway and worker."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlparse

import pytest
from proxy import FaultyProxy
from worker_support import YAML_FLOW

from pyoco_server.client import (
    PyocoConnectionError,
    PyocoHttpClient,
    PyocoHttpError,
)
from pyoco_server.embedded import free_port
from pyoco_server.nats_client import connect


def test_submit_wait_get_tasks_list(system):
    with PyocoHttpClient(system.base_url) as client:
        submitted = client.submit_run("add", {"x": 41})
        assert submitted["status"] == "PENDING"
        final = client.wait(submitted["run_id"], timeout=30)
        assert final["status"] == "COMPLETED"
        snapshot = client.get_run(submitted["run_id"], include=["records"])
        assert snapshot["task_records"]["to_text"]["output"] == "v=42"
        tasks = client.get_tasks(submitted["run_id"])
        assert tasks["tasks"] == {"add_one": "SUCCEEDED", "to_text": "SUCCEEDED"}
        listed = client.list_runs(flow="add", limit=5)
        assert submitted["run_id"] in [run["run_id"] for run in listed]
        assert any(w["state"] in ("IDLE", "RUNNING") for w in client.list_workers())
        assert "pyoco_runs_total" in client.metrics()


def test_submit_yaml_uses_defaults(system):
    with PyocoHttpClient(system.base_url) as client:
        run = client.submit_run_yaml(YAML_FLOW, "yaml-add")
        final = client.wait(run["run_id"], timeout=30)
        assert final["status"] == "COMPLETED"
        assert final["params"] == {"x": 1}


def test_errors_carry_status_and_error_id(system):
    with PyocoHttpClient(system.base_url) as client:
        with pytest.raises(PyocoHttpError) as info:
            client.get_run("00000000-0000-4000-8000-000000000000")
        assert (info.value.status, info.value.err_id) == (404, "ERR-PYOCO-0005")
        with pytest.raises(PyocoHttpError) as info:
            client.submit_run("add", tag="bad.tag")
        assert (info.value.status, info.value.err_id) == (422, "ERR-PYOCO-0002")


def test_unreachable_server_raises_after_bounded_retries():
    client = PyocoHttpClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01)
    with pytest.raises(PyocoConnectionError, match="pyoco-server up"):
        client.list_runs()


async def _count_runs(system) -> int:
    nc = await connect(system.settings.nats_url, "count-runs")
    try:
        kv = await nc.jetstream().key_value(system.settings.runs_kv_bucket)
        status = await kv.status()
        return status.values
    finally:
        await nc.close()


def test_submit_retried_after_a_dropped_connection_creates_one_run(system):
    before = asyncio.run(_count_runs(system))
    target = urlparse(system.base_url)
    proxy = FaultyProxy((target.hostname, target.port), ["drop_response"])
    try:
        with PyocoHttpClient(proxy.url, backoff=0.05) as client:
            run = client.submit_run("noop")
        assert proxy.connections == 2  # the first answer was lost, the retry got through
    finally:
        proxy.close()
    assert asyncio.run(_count_runs(system)) == before + 1
    with PyocoHttpClient(system.base_url) as client:
        assert client.wait(run["run_id"], timeout=30)["status"] == "COMPLETED"


def test_watch_resumes_after_the_stream_is_cut(system):
    target = urlparse(system.base_url)
    with PyocoHttpClient(system.base_url) as direct:
        run = direct.submit_run("nap", {"seconds": 1.5})
    proxy = FaultyProxy((target.hostname, target.port), ["cut_after_first_event"])
    try:
        with PyocoHttpClient(proxy.url, backoff=0.05) as client:
            events = [e for e in client.watch_run(run["run_id"]) if e.event == "snapshot"]
        assert proxy.connections >= 2, "the stream was never cut"
        assert events[0].data["status"] != "COMPLETED", "cut too late to test a resume"
    finally:
        proxy.close()
    statuses = [event.data["status"] for event in events]
    assert statuses[-1] == "COMPLETED"
    revisions = [int(event.id) for event in events]
    assert revisions == sorted(set(revisions)), f"events repeated or out of order: {revisions}"
    assert json.dumps(events[-1].data)
