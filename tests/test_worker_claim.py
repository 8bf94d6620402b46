"""The claim from the job's PENDING snapshot revision (docs/worker.md, "Claim").

A job from the gateway tells the revision of the PENDING snapshot created for it; the worker
claims the run with one compare-and-set on it instead of reading the snapshot first. These
tests make that revision stale in the ways a user can (a field written meanwhile, a cancel,
a redelivery of a job that already ran, a forged field) and check that the run still runs
exactly once and keeps what was written. One worker at its defaults (concurrency 1) with two
tags serves the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from falcon.testing import ASGIConductor
from worker_support import (
    WorkerProcess,
    make_job,
    open_store,
    queue_is_empty,
    running_worker,
    wait_for_run,
    wait_until,
)

from pyoco_server.api_keys import ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings
from pyoco_server.gateway.app import create_app
from pyoco_server.jobs import (
    PENDING_FIELD,
    build_job,
    encode_job,
    encoded_with_pending,
    pending_from_job,
    pending_snapshot,
    with_pending,
    without_pending,
)
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore, encode_capped
from pyoco_server.testing import isolated_settings


@pytest.fixture(scope="module")
def shared_settings(nats_server) -> Settings:
    return isolated_settings(nats_server.url)


@pytest.fixture(scope="module")
def worker(shared_settings: Settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    directory = tmp_path_factory.mktemp("worker")
    with running_worker(shared_settings, directory, "--tags", "default,other") as process:
        yield process


@pytest.fixture
async def system(nc, shared_settings: Settings, worker: WorkerProcess):
    js, store = await open_store(nc, shared_settings)
    await worker.wait_ready(js, shared_settings)
    return js, store


async def create_pending(store: RunStore, job: dict) -> dict:
    """The PENDING snapshot as the gateway writes it; returns the job telling its revision."""
    snapshot = pending_snapshot(job)
    revision = await store.create(snapshot, job)
    carried = with_pending(job, snapshot, revision)
    assert pending_from_job(carried) is not None
    return carried


async def publish(js, settings: Settings, job: dict, msg_id: str | None = None) -> None:
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    await js.publish(settings.work_subject(job["tag"]), encode_job(job), headers=headers)


def runs_of(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.mark.parametrize("tag", ["default", "other"])
async def test_a_stale_revision_runs_once_and_keeps_what_was_written_meanwhile(
    system, shared_settings, tmp_path, tag
):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = await create_pending(store, make_job("marker", {"marker": str(marker)}, tag=tag))
    # Something writes the run between submit and claim (a plugin field, say): the job's
    # revision is stale now.
    await store.update(job["run_id"], lambda s: {**s, "note": "kept"}, "noted")
    await publish(js, shared_settings, job)
    snapshot = await wait_for_run(store, job["run_id"])
    assert snapshot["status"] == "COMPLETED"
    assert snapshot["note"] == "kept"
    assert runs_of(marker) == 1


async def test_a_run_cancelled_after_submit_is_not_executed(system, shared_settings, tmp_path):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = await create_pending(store, make_job("marker", {"marker": str(marker)}))
    await store.update(job["run_id"], lambda s: {**s, "status": "CANCELLED"}, "cancelled")
    await publish(js, shared_settings, job)
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="the job to be ACKed")
    assert (await store.get(job["run_id"]))[0]["status"] == "CANCELLED"
    assert runs_of(marker) == 0


async def test_a_redelivered_job_with_its_revision_is_not_run_again(
    system, shared_settings, tmp_path
):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = await create_pending(store, make_job("marker", {"marker": str(marker)}))
    await publish(js, shared_settings, job)
    assert (await wait_for_run(store, job["run_id"]))["status"] == "COMPLETED"
    _, revision = await store.get(job["run_id"])
    # The very same message again, as JetStream redelivers it when an ACK got lost.
    await publish(js, shared_settings, job, msg_id=f"again-{job['run_id']}")
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="the job to be ACKed")
    assert runs_of(marker) == 1, "the flow ran again"
    assert (await store.get(job["run_id"]))[1] == revision, "the terminal snapshot was rewritten"


async def test_the_claim_starts_from_the_snapshot_the_job_carries(system, shared_settings):
    js, store = system
    job = await create_pending(store, make_job("noop"))
    # Same revision, but the job says the snapshot had one more field: only a claim that
    # skipped the read can have written it.
    job[PENDING_FIELD]["extra"]["carried_only"] = True
    await publish(js, shared_settings, job)
    snapshot = await wait_for_run(store, job["run_id"])
    assert snapshot["status"] == "COMPLETED"
    assert snapshot["carried_only"] is True


@pytest.mark.parametrize("auth", ["none", "api_key"])
async def test_a_run_submitted_through_the_gateway_keeps_its_tenant(
    system, nc, shared_settings, auth
):
    _, store = system
    settings = shared_settings
    headers: dict[str, str] = {}
    if auth == "api_key":
        settings = shared_settings.with_overrides(http_auth_mode="api_key", auth_pepper="p" * 32)
        kv = await open_auth_kv(nc.jetstream(timeout=5.0), settings)

        async def get_kv():
            return kv

        key, _ = await ApiKeyStore(get_kv, settings.auth_pepper.encode()).create("acme")
        headers = {settings.http_api_key_header: key}
    app = create_app(settings, build_plugin_manager())
    async with ASGIConductor(app) as client:
        answer = await client.simulate_post("/runs", json={"flow_name": "noop"}, headers=headers)
        assert answer.status_code == 200, answer.text
    snapshot = await wait_for_run(store, answer.json["run_id"])
    assert snapshot["status"] == "COMPLETED"
    assert snapshot.get("tenant_id") == ("acme" if auth == "api_key" else None)
    assert "pending_snapshot" not in snapshot


@pytest.mark.parametrize(
    "field",
    [
        "not an object",
        {"revision": "7", "extra": {}},
        {"revision": True, "extra": {}},
        {"revision": 1, "extra": []},
        {"revision": 10**9, "extra": {"tenant_id": "forged"}},
    ],
)
async def test_a_malformed_or_forged_field_falls_back_to_reading_the_run(
    system, shared_settings, tmp_path, field
):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = make_job("marker", {"marker": str(marker)})
    await store.create(pending_snapshot(job), job)
    await publish(js, shared_settings, {**job, PENDING_FIELD: field})
    snapshot = await wait_for_run(store, job["run_id"])
    assert snapshot["status"] == "COMPLETED"
    assert "tenant_id" not in snapshot
    assert runs_of(marker) == 1


def test_a_snapshot_the_size_cap_cut_down_is_read_by_the_worker_instead():
    job = make_job("noop", {"blob": "x" * 5000})
    snapshot = pending_snapshot(job)
    encode_capped(snapshot, 1024)  # sheds fields, as RunStore.prepare does over the cap
    assert PENDING_FIELD not in with_pending(job, snapshot, 3)


def test_plugin_fields_of_the_pending_snapshot_ride_in_the_job():
    job = make_job("noop", {"x": 1}, tenant_id="acme", api_key_id="k1")
    stored = {**pending_snapshot(job), "workflow_yaml_sha256": "ab", "updated_at": 1.0}
    carried = with_pending(job, stored, 5)
    assert json.loads(encode_job(carried))[PENDING_FIELD] == {
        "revision": 5,
        "extra": {"workflow_yaml_sha256": "ab"},
    }
    snapshot, revision = pending_from_job(carried)
    assert revision == 5
    assert {**snapshot, "updated_at": 1.0} == stored
    assert without_pending(carried) == job


def test_the_gateway_adds_the_field_to_the_encoded_job_as_if_encoding_it_again():
    """The gateway splices the field onto the job it already encoded (a YAML run's job carries
    the whole file); the bytes must decode to what encoding the extended job gives."""
    job = build_job("run-y", "demo", "default", ["default"], {"x": "ü"}, workflow_yaml=b"a: 1\n")
    stored = {**pending_snapshot(job), "team": "blue", "updated_at": 1.0}
    spliced = encoded_with_pending(encode_job(job), job, stored, 7)
    assert json.loads(spliced) == json.loads(encode_job(with_pending(job, stored, 7)))
    assert json.loads(spliced)[PENDING_FIELD] == {"revision": 7, "extra": {"team": "blue"}}
    capped = {k: v for k, v in stored.items() if k != "params"}
    assert encoded_with_pending(encode_job(job), job, capped, 7) == encode_job(job)
