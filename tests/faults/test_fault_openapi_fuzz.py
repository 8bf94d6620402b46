"""Fuzz the HTTP API from its own OpenAPI document with schemathesis.

A real gateway process (uvicorn) on the test NATS server is driven by the ``st`` command line:
examples generated from ``/openapi.json``, valid and invalid, then stateful sequences that
follow the links between operations (submit, then read the run). Every check runs except one:
no answer may be a 5xx, and every status code, content type, header and body must conform to
the document.

Left out: ``positive_data_acceptance`` ("a schema-valid request must be accepted"). Some
rejections cannot be expressed in a schema and are right: a workflow file that is a valid
string but not a valid flow.yaml (422 with a policy reason) and an ``Idempotency-Key`` reused
with a different body (422, as the IETF Idempotency-Key draft asks).

``PYOCO_FUZZ_EXAMPLES`` (default 25 per operation) and ``PYOCO_FUZZ_SEED`` (default: fixed, so
CI is repeatable) widen or vary the search.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import start_gateway

from pyoco_server.api_keys import ApiKeyStore
from pyoco_server.nats_client import connect
from pyoco_server.testing import GatewayProcess, isolated_settings

EXAMPLES = os.environ.get("PYOCO_FUZZ_EXAMPLES", "25")
SEED = os.environ.get("PYOCO_FUZZ_SEED", "20261130")
PEPPER = "fuzz-pepper-0123456789abcdef"
#: No worker runs here, so a watch would stream until PYOCO_WATCH_MAX_SEC: keep them short.
#: Short watches (the fuzzer opens many); a NATS timeout far above the default 2 s, because a
#: CI machine running the suite in parallel can stall NATS requests for seconds and the
#: gateway then answers 503 ERR-PYOCO-0003 by design (tests/gateway/test_resilience.py covers
#: that): these tests look for answers the input causes, not for a slow machine.
SHORT_WATCHES = {
    "watch_max_sec": 0.3,
    "watch_heartbeat_interval_sec": 0.1,
    "http_nats_timeout_sec": 15.0,
}
#: A whole schemathesis run must end within this (it normally takes 5-15 s).
RUN_TIMEOUT_SEC = 240


def schemathesis(base_url: str, report: Path, *headers: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    for header in headers:
        command += ["--header", header]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
        cwd=report.parent,
    )


def assert_clean(result: subprocess.CompletedProcess, gateway: GatewayProcess) -> None:
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    assert "Tested: " in result.stdout, result.stdout[-3000:]
    server_errors = [
        event
        for event in gateway.log_events()
        if event.get("event") == "http_error" and event.get("status", 0) >= 500
    ]
    shown = ("status", "method", "path", "detail", "exception", "exc_info")
    assert not server_errors, [
        {key: event[key] for key in shown if key in event} for event in server_errors[:3]
    ]


@pytest.mark.slow
async def test_fuzzing_the_api_finds_no_server_error_or_nonconformance(nats_server, tmp_path):
    settings = isolated_settings(
        nats_server.url, yaml_allowed_callables=("tests.flows",), **SHORT_WATCHES
    )
    gateway = start_gateway(settings, tmp_path)
    try:
        await gateway.wait_ready_async()
        result = schemathesis(gateway.url, tmp_path / "report")
        assert_clean(result, gateway)
    finally:
        gateway.stop()


@pytest.mark.slow
async def test_fuzzing_with_api_keys_on_finds_no_server_error(nats_server, tmp_path):
    settings = isolated_settings(
        nats_server.url, http_auth_mode="api_key", auth_pepper=PEPPER, **SHORT_WATCHES
    )
    nc = await connect(nats_server.url, "pytest")
    gateway = start_gateway(settings, tmp_path)
    try:
        await gateway.wait_ready_async()
        store = ApiKeyStore(
            lambda: nc.jetstream().key_value(settings.auth_kv_bucket), PEPPER.encode()
        )
        api_key, _ = await store.create("fuzz")
        header = f"{settings.http_api_key_header}: {api_key}"
        result = schemathesis(gateway.url, tmp_path / "report", header)
        assert_clean(result, gateway)
    finally:
        gateway.stop()
        await nc.close()
