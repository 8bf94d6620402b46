"""Real gateway + worker processes: publish, sync without restart, versions, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import nats
import pytest
from nats.js import api
from regsystem import (
    RESOLVER,
    client_cli,
    greeting_output,
    publish,
    registry_env,
    wait_greeting,
    wait_plugin_state,
    worker_record,
)

from pyoco_server.client import PyocoHttpError
from pyoco_server.testing import start_system

FLOW_REGISTRY = "pyoco-flow-registry"


def sync_env(trusted_key, **extra: str) -> dict[str, str]:
    return registry_env(
        PYOCO_PLUGIN_SYNC="true",
        PYOCO_PLUGIN_TRUSTED_KEYS=trusted_key.public,
        PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH="true",
        **extra,
    )


def test_published_plugin_serves_within_5s_while_a_running_flow_completes_untouched(
    nats_server, plugin_wheels, trusted_key, tmp_path
):
    env = sync_env(trusted_key)
    with start_system(
        nats_server.url,
        tmp_path / "logs",
        env=env,
        flow_resolver=RESOLVER,
        concurrency=2,
        worker_args=["--plugins", "flow-registry"],
    ) as system:
        assert greeting_output(system) is None  # not published yet: flow not found
        marker, release = tmp_path / "marker", tmp_path / "release"
        running = system.submit("marker_wait", {"marker": str(marker), "release": str(release)})
        system.wait(running, statuses={"RUNNING"})
        while not marker.exists():
            time.sleep(0.02)
        before = worker_record(system.client, system.worker_id)

        started = time.monotonic()
        published = client_cli(
            system.url,
            "plugins",
            "publish",
            str(plugin_wheels.flow_registry),
            "--sign-key",
            str(trusted_key.private_file),
            "--tags",
            "default",
        )
        assert published.returncode == 0, published.stderr
        stored = json.loads(published.stdout)
        assert stored["version"] == "0.1.0" and stored["signed"] and stored["tags"] == ["default"]
        assert (
            stored["sha256_hex"]
            == hashlib.sha256(plugin_wheels.flow_registry.read_bytes()).hexdigest()
        )
        wait_greeting(system, "hello, world", timeout=10)
        served_after = time.monotonic() - started
        assert served_after < 5.0, f"served {served_after:.2f} s after publishing"

        assert system.get(running)["status"] == "RUNNING"  # never interrupted
        status = wait_plugin_state(
            system.client, system.worker_id, FLOW_REGISTRY, lambda s: s["state"] == "ok"
        )
        assert status["version"] == status["active_version"] == "0.1.0"
        assert status["key_id"] and status["entry_points"] == ["flow-registry"]
        release.write_text("go")
        done = system.wait(running)
        assert done["status"] == "COMPLETED"
        assert marker.read_text().count("\n") == 1  # ran once, in one process
        after = worker_record(system.client, system.worker_id)
        assert after["instance_id"] == before["instance_id"]  # the host never restarted
        assert after["pid"] == before["pid"]
        installed = list((tmp_path / "logs" / ".pyoco" / "plugins" / system.worker_id).glob("*/*"))
        assert [p.name[:6] for p in installed] == ["0.1.0-"]


def test_newer_version_downgrade_rollback_by_delete_and_pin(
    nats_server, plugin_wheels, trusted_key, tmp_path
):
    env = sync_env(trusted_key)
    with start_system(
        nats_server.url,
        tmp_path / "logs",
        env=env,
        tags=["a", "b"],
        concurrency=1,
        worker_args=["--plugins", "flow-registry"],
    ) as system:
        client = system.client
        publish(client, plugin_wheels.flow_registry, trusted_key)  # no tags: every worker
        wait_greeting(system, "hello, world", tag="a")
        publish(client, plugin_wheels.flow_registry_v2, trusted_key, tags=["b"])
        wait_greeting(system, "hello v2, world", tag="a")
        assert (
            wait_plugin_state(
                client, system.worker_id, FLOW_REGISTRY, lambda s: s["version"] == "0.2.0"
            )["state"]
            == "ok"
        )

        table = client_cli(system.url, "workers", "--output", "plugins").stdout.splitlines()
        assert table[0].split() == [
            "WORKER_ID", "WORKER_STATE", "DISTRIBUTION", "VERSION", "STATE", "REASON",
            "ACTIVE_VERSION",
        ]  # fmt: skip
        assert table[1].split()[2:5] == [FLOW_REGISTRY, "0.2.0", "ok"]

        with pytest.raises(PyocoHttpError) as downgrade:
            publish(client, plugin_wheels.flow_registry, trusted_key)
        assert downgrade.value.status == 409
        assert downgrade.value.err_id == "ERR-PYOCO-0041"

        client.delete_wheel(plugin_wheels.flow_registry_v2.name)  # roll back by delete
        wait_greeting(system, "hello, world", tag="a")
        publish(client, plugin_wheels.flow_registry_v2, trusted_key)
        wait_greeting(system, "hello v2, world", tag="a")
        pinned = client_cli(system.url, "plugins", "pin", "pyoco-flow-registry==0.1.0")
        assert pinned.returncode == 0, pinned.stderr
        wait_greeting(system, "hello, world", tag="a")  # roll back by pin
        assert (
            json.loads(client_cli(system.url, "plugins", "unpin", FLOW_REGISTRY).stdout)["pinned"]
            is None
        )
        wait_greeting(system, "hello v2, world", tag="a")

        history = client.list_wheel_history()
        assert [e["action"] for e in history] == [
            "unpin", "pin", "upload", "delete", "upload", "upload",
        ]  # fmt: skip
        assert all(e["actor"]["role"] is None for e in history)  # auth off: no key
        uploads = [e for e in history if e["action"] == "upload"]
        assert {e["sha256_hex"] for e in uploads} == {
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (plugin_wheels.flow_registry, plugin_wheels.flow_registry_v2)
        }
        legacy = client_cli(system.url, "wheel-history", "--action", "delete")
        assert [e["wheel_name"] for e in json.loads(legacy.stdout)] == [
            plugin_wheels.flow_registry_v2.name
        ]
        listed = json.loads(client_cli(system.url, "wheels").stdout)
        assert [(w["version"], w["latest"]) for w in listed] == [("0.1.0", False), ("0.2.0", True)]


async def _tamper(nats_url: str, bucket: str, name: str) -> None:
    connection = await nats.connect(nats_url)
    try:
        store = await connection.jetstream().object_store(bucket)
        data = bytearray((await store.get(name)).data)
        data[-40] ^= 0x01
        await store.put(name, bytes(data), meta=api.ObjectMeta(name=name))
    finally:
        await connection.close()


def test_tampered_unsigned_and_untrusted_wheels_are_refused_with_nothing_installed(
    nats_server, plugin_wheels, trusted_key, untrusted_key, tmp_path
):
    env = sync_env(trusted_key)
    with start_system(nats_server.url, tmp_path / "publisher", env=env, worker=False) as gateway:
        publish(gateway.client, plugin_wheels.flow_registry, trusted_key)
        publish(gateway.client, plugin_wheels.policy, None)
        publish(gateway.client, plugin_wheels.retry_backoff, untrusted_key)
    asyncio.run(
        _tamper(
            nats_server.url,
            env["PYOCO_WHEEL_OBJECT_STORE_BUCKET"],
            plugin_wheels.flow_registry.name,
        )
    )
    with start_system(
        nats_server.url,
        tmp_path / "logs",
        env=env,
        worker_args=["--plugins", "flow-registry,team-policy,retry-backoff"],
    ) as system:
        reasons = {
            dist: wait_plugin_state(
                system.client, system.worker_id, dist, lambda s: s["state"] == "failed"
            )
            for dist in (FLOW_REGISTRY, "pyoco-team-policy", "pyoco-retry-backoff")
        }
        assert {d: s["reason"] for d, s in reasons.items()} == {
            FLOW_REGISTRY: "checksum_mismatch",
            "pyoco-team-policy": "unsigned",
            "pyoco-retry-backoff": "untrusted_key",
        }
        assert all(s["active_version"] is None for s in reasons.values())
        assert greeting_output(system) is None  # nothing of it was installed or loaded
        refused = [e for e in system.log_events() if e.get("event") == "plugin_refused"]
        assert sorted(e["distribution"] for e in refused) == sorted(reasons)
        assert {e["err_id"] for e in refused} == {"ERR-PYOCO-0044"}
        root = tmp_path / "logs" / ".pyoco" / "plugins" / system.worker_id
        assert [p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"] == []
