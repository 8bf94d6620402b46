"""The pyoco-server plugin (entry point ``retry-backoff``): retry, then dead-letter.

``pyoco_failure_disposition``: a run whose task raised (``execution_error``) is NAKed with the
backoff delay and sent back to PENDING, so JetStream redelivers the job and a worker runs it
again. Only the last attempt — ``PYOCO_RETRY_MAX_ATTEMPTS``, or JetStream's last allowed
delivery — is final: FAILED plus a dead letter (``execution_error``, as the built-in ``dlq``
plugin would write it). Other failures are left to the next plugin (``None``).

``pyoco_enrich_snapshot`` shows the retries in the run's snapshot under ``retry``:
``attempt`` (this execution's number), ``max_attempts``, ``next_retry_at`` (epoch seconds
while the run waits for its next attempt, else ``None``), ``delay_sec`` and ``last_error``.
The snapshot's own top-level ``attempt`` belongs to pyoco-server (operator redrives), so the
plugin's fields live in their own object.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from pyoco_server.config import Settings
from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import FAILED, PENDING, Disposition, Failure

from .backoff import BackoffPolicy

#: Decisions kept for the snapshot write that follows them (bounded; oldest dropped).
REMEMBERED_DECISIONS = 10_000


@dataclass(frozen=True)
class RetryState:
    """What the snapshot shows under ``retry``."""

    attempt: int
    max_attempts: int
    next_retry_at: float | None = None
    delay_sec: float | None = None
    last_error: str | None = None
    run_attempt: int = 1


class RetryBackoff:
    """Retry ``execution_error`` failures with exponential backoff (see module docstring)."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self._decisions: OrderedDict[str, RetryState] = OrderedDict()

    def _remember(self, run_id: Any, state: RetryState) -> None:
        if not isinstance(run_id, str):
            return
        self._decisions[run_id] = state
        self._decisions.move_to_end(run_id)
        while len(self._decisions) > REMEMBERED_DECISIONS:
            self._decisions.popitem(last=False)

    @hookimpl
    def pyoco_failure_disposition(self, failure: Failure, settings: Settings) -> Disposition | None:
        """NAK with backoff and PENDING, or — on the last attempt — FAILED + dead letter."""
        if not isinstance(failure.job, dict):
            return None
        run_id = failure.job.get("run_id")
        if failure.kind != "execution_error":
            self._decisions.pop(run_id, None)  # what follows is not one of our decisions
            return None
        run_attempt = int(failure.job.get("attempt") or 1)
        attempt = failure.num_delivered
        error = failure.error[:500]
        if attempt >= self.policy.max_attempts or failure.last_delivery:
            self._remember(
                run_id,
                RetryState(attempt, self.policy.max_attempts, None, None, error, run_attempt),
            )
            reason = "execution_error" if settings.dlq_publish_execution_error else None
            return Disposition("ack", FAILED, reason)
        delay = self.policy.delay(attempt)
        state = RetryState(
            attempt, self.policy.max_attempts, time.time() + delay, delay, error, run_attempt
        )
        self._remember(run_id, state)
        return Disposition("nak", PENDING, None, delay_sec=delay)

    @hookimpl
    def pyoco_enrich_snapshot(
        self, snapshot: dict[str, Any], job: dict[str, Any] | None, event: str
    ) -> dict[str, Any] | None:
        """``retry`` in the snapshot: counted at each start, detailed at each failure."""
        run_id = snapshot.get("run_id")
        if event in ("retrying", "failed"):
            state = self._decisions.get(run_id) if isinstance(run_id, str) else None
            return {"retry": asdict(state)} if state is not None else None
        if event != "started":
            return None
        if isinstance(run_id, str):
            self._decisions.pop(run_id, None)
        run_attempt = int(snapshot.get("attempt") or 1)
        previous = snapshot.get("retry")
        attempt = 1
        last_error = None
        if isinstance(previous, dict) and previous.get("run_attempt", 1) == run_attempt:
            attempt = int(previous.get("attempt") or 0) + 1
            last_error = previous.get("last_error")
        state = RetryState(attempt, self.policy.max_attempts, None, None, last_error, run_attempt)
        return {"retry": asdict(state)}


#: The instance the entry point names, configured from ``PYOCO_RETRY_*`` at import.
plugin = RetryBackoff(BackoffPolicy.from_env())
