"""The plugin object, configured from ``PYOCO_FAILURE_WEBHOOK_*``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from pyoco_server.hookspecs import hookimpl
from pyoco_server.log import get_logger

log = get_logger(__name__)

URL_ENV = "PYOCO_FAILURE_WEBHOOK_URL"
ATTEMPTS_ENV = "PYOCO_FAILURE_WEBHOOK_ATTEMPTS"
BACKOFF_ENV = "PYOCO_FAILURE_WEBHOOK_BACKOFF_SEC"
TIMEOUT_ENV = "PYOCO_FAILURE_WEBHOOK_TIMEOUT_SEC"
#: Longest single wait between two attempts.
MAX_BACKOFF_SEC = 16.0
#: Answers worth another attempt (the receiver may recover); any other 4xx is final.
RETRY_STATUSES = frozenset({408, 425, 429})
#: Fields of the snapshot sent (the full snapshot may hold large task outputs).
PAYLOAD_FIELDS = (
    "run_id",
    "attempt",
    "flow_name",
    "status",
    "error",
    "tag",
    "tags",
    "tenant_id",
    "worker_id",
    "start_time",
    "end_time",
    "updated_at",
)


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also false for NaN
        raise ValueError(f"{name}={raw!r} is invalid: expected a number >= {minimum:g}")
    return value


@dataclass(frozen=True)
class WebhookConfig:
    """Where to POST and how hard to try: ``attempts`` POSTs at most, waiting
    ``backoff_sec * 2**n`` (at most :data:`MAX_BACKOFF_SEC`) after the n-th failure."""

    url: str | None = None
    attempts: int = 4
    backoff_sec: float = 1.0
    timeout_sec: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookConfig:
        """Read ``PYOCO_FAILURE_WEBHOOK_*``; an invalid value raises ``ValueError`` naming it."""
        environ = os.environ if environ is None else environ
        url = environ.get(URL_ENV, "").strip() or None
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{URL_ENV}={url!r} is invalid: expected an http(s) URL")
        attempts = _number(environ, ATTEMPTS_ENV, cls.attempts, 1)
        if attempts != int(attempts):
            raise ValueError(f"{ATTEMPTS_ENV}={environ[ATTEMPTS_ENV]!r} is invalid: an integer")
        return cls(
            url=url,
            attempts=int(attempts),
            backoff_sec=_number(environ, BACKOFF_ENV, cls.backoff_sec, 0),
            timeout_sec=_number(environ, TIMEOUT_ENV, cls.timeout_sec, 0.1),
        )


class FailureWebhook:
    """POSTs ``{"event": "run.failed", "run": {...}}`` for each FAILED run. The header
    ``Idempotency-Key: <run_id>:<attempt>`` lets the receiver drop repeats (the hook is
    at-least-once, and a retry after a lost answer repeats a POST that arrived)."""

    def __init__(
        self,
        config: WebhookConfig,
        post: Callable[..., httpx.Response] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._post = post or httpx.post
        self._sleep = sleep

    @hookimpl
    def pyoco_run_finished(self, snapshot: dict[str, Any]) -> None:
        if self.config.url is None or snapshot.get("status") != "FAILED":
            return
        self.send(snapshot)

    def send(self, snapshot: dict[str, Any]) -> bool:
        """POST one failed run, retrying; True once the receiver answered 2xx."""
        run = {field: snapshot.get(field) for field in PAYLOAD_FIELDS}
        key = f"{run['run_id']}:{run['attempt'] or 1}"
        config = self.config
        for attempt in range(1, config.attempts + 1):
            problem = None
            try:
                answer = self._post(
                    config.url,
                    json={"event": "run.failed", "run": run},
                    headers={"Idempotency-Key": key},
                    timeout=config.timeout_sec,
                )
                if answer.status_code < 300:
                    return True
                problem = f"HTTP {answer.status_code}"
                final = answer.status_code < 500 and answer.status_code not in RETRY_STATUSES
            except httpx.HTTPError as exc:
                problem, final = f"{type(exc).__name__}: {exc}", False
            if final or attempt == config.attempts:
                log.error(
                    "failure_webhook_gave_up", run_id=run["run_id"], tries=attempt, error=problem
                )
                return False
            log.warning("failure_webhook_retry", run_id=run["run_id"], tries=attempt, error=problem)
            self._sleep(min(MAX_BACKOFF_SEC, config.backoff_sec * 2 ** (attempt - 1)))
        return False


plugin = FailureWebhook(WebhookConfig.from_env())
