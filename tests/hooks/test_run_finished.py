"""``pyoco_run_finished``: once per terminal run, across a worker's kill -9 and two gateways,
and a plugin that raises neither blocks nor loses anything."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import finished_recorder

from pyoco_server.testing import start_system

ROOT = Path(__file__).resolve().parents[2]
RESOLVER = f"{ROOT / 'tests' / 'flows' / 'resolver.py'}:resolve"
PLUGINS = [finished_recorder.recorder, finished_recorder.broken]
#: Short AckWait so the killed worker's run comes back quickly.
ACKS = {"PYOCO_CONSUMER_ACK_WAIT_SEC": "3", "PYOCO_ACK_PROGRESS_INTERVAL_SEC": "0.5"}


def calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def wait_for(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_called_once_per_terminal_run_across_a_worker_kill9(nats_server, tmp_path):
    log = tmp_path / "finished.jsonl"
    env = {**ACKS, "PYOCO_TEST_FINISHED_LOG": str(log), "PYTHONPATH": str(ROOT)}
    first = start_system(
        nats_server.url,
        tmp_path / "first",
        plugins=PLUGINS,
        env=env,
        flow_resolver=RESOLVER,
        tags=["default", "gpu"],
    )
    second = None
    try:
        release = tmp_path / "release"
        victim = first.submit(
            "marker_wait", {"marker": str(tmp_path / "m.txt"), "release": str(release)}
        )
        first.wait_until(victim, lambda s: s["status"] == "RUNNING")
        others = [first.submit("noop", {}, tag=tag) for tag in ("default", "gpu", "gpu")]
        os.kill(first.pids["worker"], signal.SIGKILL)
        # a second gateway (sharing the hook's consumer) and a worker to take the runs over
        second = start_system(
            nats_server.url,
            tmp_path / "second",
            plugins=PLUGINS,
            env=first.env,
            flow_resolver=RESOLVER,
            tags=["default", "gpu"],
        )
        release.touch()
        finals = {run_id: second.wait(run_id, timeout=60) for run_id in [victim, *others]}
        assert {s["status"] for s in finals.values()} == {"COMPLETED"}
        assert len((tmp_path / "m.txt").read_text().splitlines()) == 2  # ran again elsewhere

        wait_for(lambda: len(calls(log)) >= len(finals))
        time.sleep(2.0)  # nothing more comes
        seen = calls(log)
        assert sorted(c["run_id"] for c in seen) == sorted(finals)
        for call in seen:
            final = finals[call["run_id"]]
            assert (call["status"], call["attempt"]) == ("COMPLETED", final.get("attempt"))
        assert "run_finished_hook_failed" in first.gateway_log() + second.gateway_log()
        assert "ERR-PYOCO-0050" in first.gateway_log() + second.gateway_log()
    finally:
        if second is not None:
            second.stop()
        first.stop()
