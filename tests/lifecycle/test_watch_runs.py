"""``GET /runs/{run_id}/watch`` end to end: real gateway (uvicorn), real worker, real JetStream."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import time
import uuid

import httpx
from lctools import (
    WATCH_HEARTBEAT_SEC,
    collect,
    gauge,
    snapshots,
    sse_events,
    start_gateway,
    submit,
    wait_status,
    wait_tasks,
)
from worker_support import wait_until

STEPS = ("step_one", "step_two", "step_three")


def _deduped(values: list) -> list:
    return [value for index, value in enumerate(values) if index == 0 or values[index - 1] != value]


async def _block_worker(client, tmp_path) -> list[str]:
    """Occupy both execution slots of the module's worker until ``tmp_path/release`` exists."""
    params = {"marker": str(tmp_path / "m"), "release": str(tmp_path / "release")}
    blockers = [await submit(client, "marker_wait", params=params) for _ in range(2)]
    for run_id in blockers:
        await wait_tasks(client, run_id, {"wait_for_file": "RUNNING"})
    return blockers


async def test_watch_sends_every_transition_of_a_three_task_run_in_order_then_closes(
    client, ready_worker, tmp_path
):
    blockers = await _block_worker(client, tmp_path)
    run_id = await submit(client, "steps", params={"step_seconds": 0.4})
    reader = asyncio.ensure_future(collect(client, run_id, params={"include": "records"}))
    # the stream starts with the current snapshot: PENDING, since no slot is free
    first = await wait_status(client, run_id, {"PENDING"})
    assert first["status"] == "PENDING"
    await asyncio.sleep(0.3)  # let the watch deliver its first event before the run can start
    (tmp_path / "release").touch()
    events, ended = await reader
    assert ended, "the server did not close the stream"
    received = snapshots(events)
    assert received[0].data["status"] == "PENDING"
    assert _deduped([e.data["status"] for e in received]) == ["PENDING", "RUNNING", "COMPLETED"]
    assert events[-1] is received[-1], "events after the terminal snapshot"
    ids = [int(e.id) for e in received]
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {ids}"
    for name in STEPS:
        states = _deduped([e.data["tasks"].get(name, "PENDING") for e in received])
        assert states[-2:] == ["RUNNING", "SUCCEEDED"], (name, states)
    # tasks ran one after the other, and the stream showed it in that order
    order = [
        (index, name)
        for index, event in enumerate(received)
        for name in STEPS
        if event.data["tasks"].get(name) == "RUNNING"
    ]
    first_running = {name: min(i for i, n in order if n == name) for name in STEPS}
    assert first_running["step_one"] < first_running["step_two"] < first_running["step_three"]
    final = received[-1].data
    assert final["task_records"]["step_three"]["output"] == "one,two,three"  # include=records
    assert final["worker_alive"] is True and final["worker_id"] == ready_worker.worker_id
    for blocker in blockers:
        await wait_status(client, blocker, {"COMPLETED"})


async def test_watch_resumes_after_last_event_id_without_repeating(client, ready_worker):
    run_id = await submit(client, "steps", params={"step_seconds": 0.3})
    head, ended = await collect(client, run_id, limit=2)
    assert not ended and [e.event for e in head] == ["snapshot", "snapshot"]
    resumed, ended = await collect(client, run_id, headers={"Last-Event-ID": head[-1].id})
    assert ended
    rest = snapshots(resumed)
    assert rest and all(int(e.id) > int(head[-1].id) for e in rest)
    ids = [int(e.id) for e in head + rest]
    assert ids == sorted(set(ids)), "an event was repeated"
    assert rest[-1].data["status"] == "COMPLETED"

    # the client already had the terminal snapshot: nothing more to send
    again, ended = await collect(client, run_id, headers={"Last-Event-ID": rest[-1].id})
    assert ended and snapshots(again) == []
    # an older id: the current (terminal) snapshot, once
    older, ended = await collect(client, run_id, headers={"Last-Event-ID": head[0].id})
    assert ended and [e.id for e in snapshots(older)] == [rest[-1].id]


async def test_idle_watch_sends_heartbeats_and_ends_at_its_timeout(client):
    run_id = await submit(client, "noop", tag=f"idle{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    events, ended = await collect(client, run_id, params={"timeout_sec": "1.5"})
    elapsed = time.monotonic() - started
    assert ended and 1.5 <= elapsed < 10
    assert events[0].event == "snapshot" and events[0].data["status"] == "PENDING"
    names = [e.event for e in events]
    assert names.count("snapshot") == 1
    assert names.count("heartbeat") >= 1 and all(e.id is None for e in events[1:])
    assert names[-1] == "timeout"
    gaps = [b.received - a.received for a, b in itertools.pairwise(events)]
    assert max(gaps) < WATCH_HEARTBEAT_SEC * 6, gaps


async def test_a_cancel_reaches_a_watcher_at_once(client):
    run_id = await submit(client, "noop", tag=f"idle{uuid.uuid4().hex[:8]}")
    reader = asyncio.ensure_future(collect(client, run_id))
    await asyncio.sleep(0.3)
    await client.post(f"/runs/{run_id}/cancel")
    events, ended = await reader
    assert ended
    assert [e.data["status"] for e in snapshots(events)] == ["PENDING", "CANCELLED"]


async def test_watch_errors_are_answered_before_the_stream_starts(client):
    missing = await client.get(f"/runs/{uuid.uuid4()}/watch")
    assert missing.status_code == 404
    assert missing.json()["err_id"] == "ERR-PYOCO-0005"
    run_id = await submit(client, "noop", tag=f"idle{uuid.uuid4().hex[:8]}")
    for params, headers in [
        ({"timeout_sec": "0"}, {}),
        ({"timeout_sec": "-3"}, {}),
        ({"timeout_sec": "soon"}, {}),
        ({"timeout_sec": "nan"}, {}),
        ({"include": "everything"}, {}),
        ({}, {"Last-Event-ID": "abc"}),
    ]:
        answer = await client.get(f"/runs/{run_id}/watch", params=params, headers=headers)
        assert answer.status_code == 422, (params, headers, answer.text)
        assert answer.json()["err_id"] == "ERR-PYOCO-0002"
        assert answer.headers["content-type"].startswith("application/json")


async def test_dropped_watches_are_released(client, gateway, nc, lc_settings):
    run_id = await submit(client, "noop", tag=f"idle{uuid.uuid4().hex[:8]}")
    limits = httpx.Limits(max_connections=150, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=limits) as many:
        streams = []
        for _ in range(100):
            context = many.stream("GET", f"/runs/{run_id}/watch")
            response = await context.__aenter__()
            assert response.status_code == 200
            streams.append((context, response))
        firsts = await asyncio.gather(*(anext(sse_events(response)) for _, response in streams))
        assert {event.event for event in firsts} == {"snapshot"}
        assert await gauge(client, "pyoco_watchers_open") == 100
        for context, _ in streams:  # the clients go away without reading further
            await context.__aexit__(None, None, None)

    async def released() -> bool:
        return await gauge(client, "pyoco_watchers_open") == 0

    await wait_until(released, 20, "the gateway to release the dropped watches")

    async def consumers_gone() -> bool:
        stream = await nc.jetstream().stream_info(f"KV_{lc_settings.runs_kv_bucket}")
        return stream.state.consumer_count == 0

    await wait_until(consumers_gone, 40, "JetStream to drop the watches' consumers")


async def test_cli_watch_prints_each_change_until_the_run_ends(
    client, gateway, ready_worker, tmp_path
):
    await _block_worker(client, tmp_path)
    run_id = await submit(client, "steps", params={"step_seconds": 0.2})
    base = [sys.executable, "-m", "pyoco_server.cli.client", "--server", gateway.url]
    process = await asyncio.create_subprocess_exec(
        *base,
        "watch",
        run_id,
        "--until-terminal",
        "--output",
        "status",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def watching() -> bool:
        return await gauge(client, "pyoco_watchers_open") >= 1

    await wait_until(watching, 30, "the CLI to open its watch")
    (tmp_path / "release").touch()
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "PENDING"
    assert any(line.startswith("RUNNING") for line in lines), lines
    status, *tasks = lines[-1].split()
    assert status == "COMPLETED"
    assert sorted(tasks) == sorted(f"{name}=SUCCEEDED" for name in STEPS)

    process = await asyncio.create_subprocess_exec(
        *base, "watch", run_id, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    documents = [json.loads(line) for line in out.decode().splitlines()]
    assert [d["status"] for d in documents] == ["COMPLETED"]
    assert documents[0]["run_id"] == run_id and "task_records" not in documents[0]


async def test_shutdown_ends_open_watches_with_a_closing_event(lc_settings, tmp_path):
    own = start_gateway(lc_settings, tmp_path)
    try:
        await own.wait_ready_async()
        async with httpx.AsyncClient(base_url=own.url, timeout=30) as http:
            run_id = await submit(http, "noop", tag=f"idle{uuid.uuid4().hex[:8]}")
            async with http.stream("GET", f"/runs/{run_id}/watch") as response:
                events = sse_events(response)
                assert (await anext(events)).event == "snapshot"
                own.process.send_signal(signal.SIGTERM)
                rest = [event async for event in events if event.event != "heartbeat"]
        assert [event.event for event in rest] == ["closing"]
        assert await asyncio.to_thread(own.process.wait, 15) == 0
    finally:
        own.stop()
