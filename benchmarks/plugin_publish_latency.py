"""Publish-to-serving latency of the plugin registry, through real processes.

One nats-server, one gateway and one ``pyoco-worker --plugin-sync --concurrency 1`` (the
example ``flow-registry`` wheels, 0.1.0 and a 0.2.0 whose ``greet`` answers ``hello v2``).
Each cycle:

* publish 0.2.0 (signed) → time until the worker reports it ``ok`` in ``/workers``, and until
  a ``greeting`` run answers ``hello v2`` (publish-to-serving);
* delete 0.2.0 → time until ``greeting`` answers ``hello`` again (rollback-to-serving).

Side by side, in the same run: the latency of one ``greeting`` run on a worker that is not
switching (submit → terminal snapshot), so the figures can be read as ratios on any machine.

Usage: ``.venv/bin/python benchmarks/plugin_publish_latency.py [--cycles 10]``. Prints a table,
then one JSON document (the last line) with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "plugin_registry"))

from regwheels import build_plugin_wheels  # noqa: E402

from pyoco_server.embedded import EmbeddedNats  # noqa: E402
from pyoco_server.plugin_registry.signing import (  # noqa: E402
    generate_key_pair,
    load_private_key,
    sign_wheel,
    write_private_key,
)
from pyoco_server.testing import start_system  # noqa: E402


def _publish(client, path: Path, key) -> float:
    data = path.read_bytes()
    signature = sign_wheel(key, path.name, hashlib.sha256(data).hexdigest())
    start = time.perf_counter()
    client.upload_wheel(path.name, data, signature=signature)
    return time.perf_counter() - start


def _greet(system) -> tuple[str | None, float]:
    start = time.perf_counter()
    snapshot = system.wait(system.submit("greeting", {"name": "x"}), 60)
    elapsed = time.perf_counter() - start
    if snapshot["status"] != "COMPLETED":
        return None, elapsed
    return snapshot["task_records"]["greet"]["output"], elapsed


def _until_greeting(system, expected: str, start: float, timeout: float = 30.0) -> float:
    while time.perf_counter() - start < timeout:
        if _greet(system)[0] == expected:
            return time.perf_counter() - start
    raise RuntimeError(f"greeting never answered {expected!r}")


def _until_synced(system, version: str, start: float, timeout: float = 30.0) -> float:
    while time.perf_counter() - start < timeout:
        worker = next(w for w in system.client.list_workers() if w["worker_id"] == system.worker_id)
        for plugin in worker.get("plugins") or []:
            if plugin["active_version"] == version and plugin["state"] == "ok":
                return time.perf_counter() - start
        time.sleep(0.02)
    raise RuntimeError(f"{version} never synced")


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyoco-bench-registry-"))
    wheels = build_plugin_wheels(Path(os.environ.get("PYOCO_TEST_WHEEL_CACHE") or work / "wheels"))
    pem, public = generate_key_pair()
    write_private_key(work / "key.pem", pem)
    key = load_private_key(work / "key.pem")
    nats = EmbeddedNats(work / "nats")
    nats.start()
    env = {
        "PYOCO_PLUGIN_SYNC": "true",
        "PYOCO_PLUGIN_TRUSTED_KEYS": public,
        "PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH": "true",
        "PYOCO_WHEEL_OBJECT_STORE_BUCKET": "bench_wheels",
        "PYOCO_PLUGIN_REGISTRY_KV_BUCKET": "bench_registry",
        "PYOCO_WHEEL_HISTORY_KV_BUCKET": "bench_history",
    }
    figures: dict[str, list[float]] = {
        "publish_http": [],
        "publish_to_synced": [],
        "publish_to_serving": [],
        "rollback_to_serving": [],
        "plain_run": [],
    }
    try:
        with start_system(
            nats.url, work / "system", env=env, worker_args=["--plugins", "flow-registry"]
        ) as system:
            _publish(system.client, wheels.flow_registry, key)
            _until_greeting(system, "hello, x", time.perf_counter())
            for _ in range(3):
                _greet(system)  # warm up
            for _ in range(args.cycles):
                figures["plain_run"].append(_greet(system)[1])
                start = time.perf_counter()
                figures["publish_http"].append(
                    _publish(system.client, wheels.flow_registry_v2, key)
                )
                figures["publish_to_synced"].append(_until_synced(system, "0.2.0", start))
                figures["publish_to_serving"].append(_until_greeting(system, "hello v2, x", start))
                figures["plain_run"].append(_greet(system)[1])
                start = time.perf_counter()
                system.client.delete_wheel(wheels.flow_registry_v2.name)
                figures["rollback_to_serving"].append(_until_greeting(system, "hello, x", start))
    finally:
        nats.stop()
    result = {name: _summary(values) for name, values in figures.items()}
    plain = result["plain_run"]["median_ms"]
    result["ratios_to_plain_run_median"] = {
        name: round(result[name]["median_ms"] / plain, 1)
        for name in ("publish_to_synced", "publish_to_serving", "rollback_to_serving")
    }
    result["cycles"] = args.cycles
    result["load_average"] = os.getloadavg()
    print(f"{'figure':<22}{'median ms':>12}{'p90 ms':>10}{'max ms':>10}")
    for name in figures:
        row = result[name]
        print(f"{name:<22}{row['median_ms']:>12}{row['p90_ms']:>10}{row['max_ms']:>10}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
