"""JetStream resource bootstrap against a real server: idempotent, warns on drift."""

from __future__ import annotations

import io
import json

from nats.js.api import RetentionPolicy

from pyoco_server.config import Settings
from pyoco_server.log import configure_logging
from pyoco_server.nats_client import ensure_resources


async def test_bootstrap_creates_everything_once(nc, settings: Settings):
    js = nc.jetstream()
    created = await ensure_resources(js, settings)
    assert set(created) == {
        settings.work_stream,
        settings.dlq_stream,
        settings.runs_kv_bucket,
        settings.workers_kv_bucket,
        settings.worker_flags_kv_bucket,
        settings.auth_kv_bucket,
        settings.idempotency_kv_bucket,
        settings.spawn_kv_bucket,
        settings.leases_kv_bucket,
        settings.plugin_registry_kv_bucket,
        settings.wheel_history_kv_bucket,
    }
    work = await js.stream_info(settings.work_stream)
    assert work.config.retention == RetentionPolicy.WORK_QUEUE
    assert work.config.subjects == [f"{settings.work_subject_prefix}.>"]
    dlq = await js.stream_info(settings.dlq_stream)
    assert dlq.config.max_msgs == 100000 and dlq.config.max_bytes == settings.dlq_max_bytes
    assert Settings().dlq_max_bytes == 536870912  # tests use a smaller one (tests/isolation.py)
    assert abs(dlq.config.max_age - 604800) < 1
    runs = await js.key_value(settings.runs_kv_bucket)
    assert (await runs.status()).history == 1
    workers = await (await js.key_value(settings.workers_kv_bucket)).status()
    # records outlive the liveness TTL so a dead worker stays listed as DISCONNECTED
    expected_ttl = settings.workers_kv_ttl_sec + settings.workers_retention_sec
    assert abs(workers.ttl - expected_ttl) < 0.01

    assert await ensure_resources(js, settings) == []


async def test_bootstrap_warns_when_an_existing_setting_differs(nc, settings: Settings):
    js = nc.jetstream()
    await ensure_resources(js, settings)
    changed = settings.with_overrides(dlq_max_msgs=5, workers_kv_ttl_sec=60.0)
    stream = io.StringIO()
    configure_logging(changed, "test", stream=stream)
    assert await ensure_resources(js, changed) == []
    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    differing = {
        (w["resource"], w["setting"])
        for w in warnings
        if w["event"] == "nats_resource_setting_differs"
    }
    assert (settings.dlq_stream, "max_msgs") in differing
    assert (f"KV {settings.workers_kv_bucket}", "max_age") in differing
    # the existing resource is used as it is
    assert (await js.stream_info(settings.dlq_stream)).config.max_msgs == 100000
