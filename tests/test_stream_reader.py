"""kv_current against real JetStream KV: current values only, in last-write order, complete."""

from __future__ import annotations

import asyncio
import uuid

from pyoco_server.stream_reader import kv_current


async def new_bucket(nc, history: int = 5):
    js = nc.jetstream()
    return await js.create_key_value(bucket=f"kvcur_{uuid.uuid4().hex[:10]}", history=history)


async def test_an_empty_bucket_lists_nothing_at_once(nc):
    kv = await new_bucket(nc)
    assert await asyncio.wait_for(kv_current(kv), 2.0) == []


async def test_only_current_values_in_the_order_of_their_last_write(nc):
    kv = await new_bucket(nc)
    await kv.put("a", b"a1")
    await kv.put("b", b"b1")
    await kv.put("c", b"c1")
    await kv.put("a", b"a2")
    await kv.delete("b")
    await kv.purge("c")
    await kv.put("x.one", b"d1")
    assert await kv_current(kv) == [("a", b"a2"), ("x.one", b"d1")]
    assert await kv_current(kv, "x.>") == [("x.one", b"d1")]


async def test_every_key_of_a_large_bucket_is_listed(nc):
    """The listing this replaced (a KV watch read until its "no more" marker) could end before
    values already on their way had arrived; here every key must be there."""
    kv = await new_bucket(nc, history=1)
    await asyncio.gather(*(kv.put(f"k{index}", b"v") for index in range(600)))
    listed = await kv_current(kv)
    assert sorted(key for key, _ in listed) == sorted(f"k{index}" for index in range(600))
