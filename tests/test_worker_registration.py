"""The worker's claim on its id in KV: who may take it over, and an instance that lost it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from worker_support import open_store

from pyoco_server.worker.registration import ClaimLost, WorkerIdInUse, WorkerRecord

TTL = 5.0


async def workers_kv(nc, settings):
    js, _ = await open_store(nc, settings)
    return await js.key_value(settings.workers_kv_bucket)


def holder(**fields) -> bytes:
    record = {
        "worker_id": "w",
        "instance_id": "other",
        "state": "IDLE",
        "hostname": "elsewhere",
        "pid": 4242,
        "heartbeat_at": time.time(),
        **fields,
    }
    return json.dumps(record).encode()


async def test_a_live_instance_on_another_host_keeps_its_id(nc, settings):
    kv = await workers_kv(nc, settings)
    await kv.put("w", holder())
    record = WorkerRecord("w", ["default"], 1)
    with pytest.raises(WorkerIdInUse) as refused:
        await record.claim(kv, TTL)
    assert refused.value.err_id == "ERR-PYOCO-0031"
    assert "pid 4242 on elsewhere" in str(refused.value)
    assert json.loads((await kv.get("w")).value)["instance_id"] == "other"
    await record.write(kv)  # never claimed: writes nothing
    assert json.loads((await kv.get("w")).value)["instance_id"] == "other"


@pytest.mark.parametrize(
    "previous",
    [
        {"state": "STOPPED"},
        {"heartbeat_at": time.time() - 60},  # silent for longer than the TTL
        {"hostname": None, "pid": 2**22 + 17},  # this host, a process that does not exist
    ],
    ids=["stopped", "silent", "dead-process-here"],
)
async def test_a_gone_owner_s_id_is_taken_over_at_once(nc, settings, previous):
    kv = await workers_kv(nc, settings)
    record = WorkerRecord("w", ["default"], 1)
    if previous.get("hostname", "x") is None:
        previous = {**previous, "hostname": record.hostname}
    await kv.put("w", holder(**previous))
    await record.claim(kv, TTL)
    stored = json.loads((await kv.get("w")).value)
    assert stored["instance_id"] == record.instance_id and stored["pid"] == record.pid


async def test_of_simultaneous_claims_exactly_one_wins(nc, settings):
    kv = await workers_kv(nc, settings)
    records = [WorkerRecord("w", ["default"], 1) for _ in range(5)]
    for index, record in enumerate(records):
        record.hostname = f"host-{index}"  # as if on five machines
    results = await asyncio.gather(*(r.claim(kv, TTL) for r in records), return_exceptions=True)
    assert sum(result is None for result in results) == 1
    assert all(isinstance(result, WorkerIdInUse) for result in results if result is not None)


async def test_an_instance_whose_id_was_taken_over_notices_on_its_next_write(nc, settings):
    kv = await workers_kv(nc, settings)
    stalled = WorkerRecord("w", ["default"], 1)
    await stalled.claim(kv, TTL)
    # it stalls past the TTL; a new instance elsewhere takes the id over
    entry = await kv.get("w")
    await kv.update(
        "w", holder(heartbeat_at=time.time() - 60, hostname="gone"), last=entry.revision
    )
    newcomer = WorkerRecord("w", ["default"], 1)
    newcomer.hostname = "elsewhere"
    await newcomer.claim(kv, TTL)
    with pytest.raises(ClaimLost):
        await stalled.write(kv)
    assert stalled.revision is None
    await stalled.write(kv)  # and then leaves the record alone
    assert json.loads((await kv.get("w")).value)["instance_id"] == newcomer.instance_id
    await newcomer.write(kv)  # the owner keeps writing


async def test_a_record_that_expired_is_written_again_by_its_owner(nc, settings):
    kv = await workers_kv(nc, settings)
    record = WorkerRecord("w", ["default"], 1)
    await record.claim(kv, TTL)
    await kv.purge("w")  # as if NATS was unreachable longer than the bucket keeps records
    await record.write(kv)
    assert json.loads((await kv.get("w")).value)["instance_id"] == record.instance_id
