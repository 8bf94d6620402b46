"""Flows for the retry tests (the worker's ``--flow-resolver tests/retry_flows.py:resolve``).

``flaky`` fails its first ``failures`` executions and then succeeds; every execution appends a
line to ``marker``, so a test can count how often the flow really ran.
"""

from __future__ import annotations

from pathlib import Path

from pyoco import Flow
from pyoco.core.models import Task


def flaky(marker: str, failures: int) -> int:
    with open(marker, "a") as handle:
        handle.write("run\n")
    attempt = len(Path(marker).read_text().splitlines())
    if attempt <= failures:
        raise ConnectionError(f"transient trouble on attempt {attempt}")
    return attempt


def resolve(flow_name: str) -> Flow | None:
    if flow_name != "flaky":
        return None
    flow = Flow(name="flaky")
    flow >> Task(func=flaky, name="flaky")
    return flow
