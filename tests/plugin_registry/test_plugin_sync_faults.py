"""Plugin sync across a NATS restart: the watch comes back and later publishes still arrive."""

from __future__ import annotations

import time

import httpx
from regsystem import publish, wait_greeting, wait_plugin_state
from test_plugin_sync_system import FLOW_REGISTRY, sync_env

from pyoco_server.client import PyocoHttpError
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.testing import start_system


def _publish_when_ready(client, wheel, key, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            publish(client, wheel, key)
            return
        except PyocoHttpError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_a_nats_restart_does_not_stop_the_sync(plugin_wheels, trusted_key, tmp_path):
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        with start_system(
            server.url,
            tmp_path / "logs",
            env=sync_env(trusted_key),
            worker_args=["--plugins", "flow-registry"],
        ) as system:
            publish(system.client, plugin_wheels.flow_registry, trusted_key)
            wait_greeting(system, "hello, world")
            port = server.port
            server.stop()
            time.sleep(1.0)
            server = EmbeddedNats(tmp_path / "nats", port=port)
            server.start()
            deadline = time.monotonic() + 60
            while httpx.get(f"{system.url}/ready").status_code != 200:
                assert time.monotonic() < deadline, "gateway never ready again"
                time.sleep(0.2)
            _publish_when_ready(system.client, plugin_wheels.flow_registry_v2, trusted_key)
            wait_greeting(system, "hello v2, world", timeout=60)
            status = wait_plugin_state(
                system.client, system.worker_id, FLOW_REGISTRY, lambda s: s["version"] == "0.2.0"
            )
            assert status["state"] == "ok"
    finally:
        server.stop()
