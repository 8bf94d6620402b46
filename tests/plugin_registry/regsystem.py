"""Helpers of the registry system tests: isolated names, keys, publishing, worker records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyoco_server.client import PyocoHttpClient
from pyoco_server.plugin_registry.signing import load_private_key, sign_wheel
from pyoco_server.testing import isolation_env

REPO_ROOT = Path(__file__).resolve().parents[2]
RESOLVER = f"{REPO_ROOT}/tests/flows/resolver.py:resolve"
PEPPER = "registry-test-pepper-0123456789"


def registry_env(**extra: str) -> dict[str, str]:
    """Isolated names for one system, the registry's buckets included."""
    env = isolation_env()
    suffix = env["PYOCO_RUNS_KV_BUCKET"].split("_", 1)[1]
    return {
        **env,
        "PYOCO_WHEEL_OBJECT_STORE_BUCKET": f"wheels_{suffix}",
        "PYOCO_WHEEL_HISTORY_KV_BUCKET": f"whist_{suffix}",
        "PYOCO_PLUGIN_REGISTRY_KV_BUCKET": f"preg_{suffix}",
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }


def _cli(script: str, module: str) -> list[str]:
    candidate = Path(sys.executable).with_name(script)
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", module]


def admin_key(nats_url: str, env: dict[str, str], role: str, tenant: str = "team") -> str:
    """A new API key made by ``pyoco-server-admin api-key create``."""
    result = subprocess.run(
        [
            *_cli("pyoco-server-admin", "pyoco_server.cli.admin"),
            "--nats-url",
            nats_url,
            "api-key",
            "create",
            "--tenant",
            tenant,
            "--role",
            role,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)["api_key"]


def client_cli(url: str, *args: str, api_key: str | None = None) -> subprocess.CompletedProcess:
    """``pyoco-client --server URL ARGS``."""
    command = [*_cli("pyoco-client", "pyoco_server.cli.client"), "--server", url]
    if api_key:
        command += ["--api-key", api_key]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=base, timeout=60)


def publish(
    client: PyocoHttpClient, wheel: Path, key: Any | None, tags: list[str] | None = None
) -> dict[str, Any]:
    """Sign ``wheel`` with ``key`` (a SigningKey, or None for unsigned) and upload it."""
    import hashlib

    data = wheel.read_bytes()
    signature = None
    if key is not None:
        digest = hashlib.sha256(data).hexdigest()
        signature = sign_wheel(load_private_key(key.private_file), wheel.name, digest)
    return client.upload_wheel(wheel.name, data, tags=tags, signature=signature)


def worker_record(client: PyocoHttpClient, worker_id: str) -> dict[str, Any]:
    return next(w for w in client.list_workers() if w["worker_id"] == worker_id)


def wait_plugin_state(
    client: PyocoHttpClient,
    worker_id: str,
    distribution: str,
    condition: Any,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll ``/workers`` until the worker's status of ``distribution`` meets ``condition``."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        plugins = worker_record(client, worker_id).get("plugins") or []
        status = next((p for p in plugins if p["distribution"] == distribution), None)
        if status is not None and condition(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"{distribution} on {worker_id}: last status {status}")


def greeting_output(system: Any, timeout: float = 30.0, tag: str | None = None) -> str | None:
    """Run ``greeting`` once; the ``greet`` task's output, or None when the flow is unknown."""
    snapshot = system.wait(system.submit("greeting", {"name": "world"}, tag=tag), timeout)
    if snapshot["status"] != "COMPLETED":
        return None
    return snapshot["task_records"]["greet"]["output"]


def wait_greeting(
    system: Any, expected: str | None, timeout: float = 20.0, tag: str | None = None
) -> float:
    """Submit ``greeting`` until it answers ``expected``; the seconds it took."""
    start = time.monotonic()
    last = "never ran"
    while time.monotonic() - start < timeout:
        last = greeting_output(system, tag=tag)
        if last == expected:
            return time.monotonic() - start
    raise AssertionError(f"greeting answered {last!r}, not {expected!r}, for {timeout} s")
