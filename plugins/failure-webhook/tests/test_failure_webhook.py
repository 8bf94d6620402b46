"""The failure-webhook plugin: retries on its own, and loaded by a real gateway."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pyoco_failure_webhook import FailureWebhook, WebhookConfig

from pyoco_server.testing import PyocoSystemError, plugin_listing

RESOLVER = f"{Path(__file__).with_name('webhook_flows.py')}:resolve"


class Receiver:
    """A local HTTP endpoint that answers ``failures`` times with 503, then 204."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((dict(self.headers), body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    receivers: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        receivers.append(Receiver(failures))
        return receivers[-1]

    yield make
    for item in receivers:
        item.close()


FAILED_RUN = {"run_id": "r1", "attempt": 2, "status": "FAILED", "error": "boom", "tasks": {}}


def test_retries_with_backoff_until_the_receiver_accepts(receiver):
    target = receiver(failures=2)
    waits: list[float] = []
    hook = FailureWebhook(
        WebhookConfig(url=target.url, attempts=4, backoff_sec=0.5), sleep=waits.append
    )
    assert hook.send(FAILED_RUN) is True
    assert len(target.received) == 3 and waits == [0.5, 1.0]
    headers, body = target.received[-1]
    assert headers["Idempotency-Key"] == "r1:2"
    assert body["event"] == "run.failed" and body["run"]["error"] == "boom"
    assert "tasks" not in body["run"]


def test_gives_up_after_the_last_attempt_and_on_a_final_answer(receiver):
    down = receiver(failures=99)
    hook = FailureWebhook(
        WebhookConfig(url=down.url, attempts=3, backoff_sec=0), sleep=lambda _: None
    )
    assert hook.send(FAILED_RUN) is False and len(down.received) == 3

    def not_found(*args, **kwargs):
        import httpx

        calls.append(args)
        return httpx.Response(404)

    calls: list = []
    hook = FailureWebhook(WebhookConfig(url="http://x/", attempts=5), post=not_found)
    assert hook.send(FAILED_RUN) is False and len(calls) == 1


def test_only_failed_runs_and_only_with_a_url(receiver):
    target = receiver()
    hook = FailureWebhook(WebhookConfig(url=target.url))
    hook.pyoco_run_finished({**FAILED_RUN, "status": "COMPLETED"})
    FailureWebhook(WebhookConfig(url=None)).pyoco_run_finished(FAILED_RUN)
    assert target.received == []


def test_configuration_is_validated():
    config = WebhookConfig.from_env(
        {"PYOCO_FAILURE_WEBHOOK_URL": "https://h/x", "PYOCO_FAILURE_WEBHOOK_ATTEMPTS": "2"}
    )
    assert (config.url, config.attempts) == ("https://h/x", 2)
    for name, value in (
        ("PYOCO_FAILURE_WEBHOOK_URL", "ftp://h/x"),
        ("PYOCO_FAILURE_WEBHOOK_ATTEMPTS", "0"),
        ("PYOCO_FAILURE_WEBHOOK_BACKOFF_SEC", "soon"),
    ):
        with pytest.raises(ValueError, match=name):
            WebhookConfig.from_env({name: value})
    with pytest.raises(PyocoSystemError, match="PYOCO_FAILURE_WEBHOOK_URL"):
        plugin_listing(env={"PYOCO_FAILURE_WEBHOOK_URL": "nope"})


def test_a_real_gateway_posts_each_failed_run_once(pyoco_system_factory, receiver):
    target = receiver(failures=1)  # the first POST fails: the plugin retries
    system = pyoco_system_factory(
        plugins=["failure-webhook"],
        flow_resolver=RESOLVER,
        env={
            "PYOCO_FAILURE_WEBHOOK_URL": target.url,
            "PYOCO_FAILURE_WEBHOOK_BACKOFF_SEC": "0.2",
        },
    )
    failed = system.run("boom", {})
    done = system.run("ok", {})
    assert (failed["status"], done["status"]) == ("FAILED", "COMPLETED")
    deadline = time.monotonic() + 30
    while len(target.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    assert [body["run"]["run_id"] for _, body in target.received] == [failed["run_id"]] * 2
    assert "disk on fire" in target.received[-1][1]["run"]["error"]
    assert "failure_webhook_retry" in system.gateway_log()


def test_listed_with_its_distribution_version():
    listed = {item["name"]: item for item in plugin_listing()}
    assert listed["failure-webhook"]["distribution"] == "pyoco-failure-webhook"
    assert listed["failure-webhook"]["hooks"] == ["pyoco_run_finished"]
