"""The KV claim protocol (create, take over a gone holder, compare-and-set) on real JetStream."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.js.api import KeyValueConfig

from pyoco_server.gateway.kv_claim import Held, claim_key, read_record


@pytest.fixture
async def kv(nc, settings):
    return await nc.jetstream().create_key_value(
        KeyValueConfig(bucket=settings.idempotency_kv_bucket, history=1)
    )


def record(**fields) -> bytes:
    return json.dumps(fields).encode()


async def test_a_free_key_is_created_and_a_live_holder_keeps_it(kv):
    revision = await claim_key(kv, "k", record(owner="first"), lambda held: False)
    assert isinstance(revision, int)
    asked = []
    second = await claim_key(kv, "k", record(owner="second"), lambda held: asked.append(held))
    assert second == Held({"owner": "first"}) and asked == [{"owner": "first"}]
    assert await read_record(kv, "k") == ({"owner": "first"}, revision)


async def test_a_refusal_raised_by_the_judge_leaves_the_holder_in_place(kv):
    await claim_key(kv, "k", record(owner="first"), lambda held: False)

    def refuse(held):
        raise LookupError(held["owner"])

    with pytest.raises(LookupError, match="first"):
        await claim_key(kv, "k", record(owner="second"), refuse)
    assert (await read_record(kv, "k"))[0] == {"owner": "first"}


async def test_of_many_claimers_taking_over_a_stale_holder_exactly_one_wins(kv):
    await claim_key(kv, "k", record(owner="crashed"), lambda held: False)

    def only_the_crashed_one(held):
        return held["owner"] == "crashed"

    outcomes = await asyncio.gather(
        *(claim_key(kv, "k", record(owner=f"c{i}"), only_the_crashed_one) for i in range(8))
    )
    [winner] = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, int)]
    assert await read_record(kv, "k") == ({"owner": f"c{winner}"}, outcomes[winner])
    for outcome in outcomes[:winner] + outcomes[winner + 1 :]:
        assert outcome is None or outcome == Held({"owner": f"c{winner}"})


async def test_a_released_key_can_be_claimed_again(kv):
    revision = await claim_key(kv, "k", record(owner="first"), lambda held: False)
    await kv.delete("k", last=revision)
    assert await read_record(kv, "k") is None
    again = await claim_key(kv, "k", record(owner="second"), lambda held: False)
    assert isinstance(again, int)
    assert await read_record(kv, "k") == ({"owner": "second"}, again)
