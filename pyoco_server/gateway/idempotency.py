"""``Idempotency-Key`` on run submission: a repeated request returns the first run.

Records live in KV ``pyoco_idempotency`` (TTL ``PYOCO_IDEMPOTENCY_TTL_SEC``) under the SHA-256
of ``tenant + key``, so keys are scoped per tenant and never stored in clear. The first request
*claims* the key with an atomic KV create (state ``pending``, the run id it will create and a
fingerprint of the request); concurrent duplicates lose the create, wait until the claim is
``done`` and answer with its run id. A failed submit releases the claim so a retry can proceed;
a claim left ``pending`` by a crashed gateway is taken over after ``stale_after_sec``
(:mod:`.kv_claim`). The same
key with a different request is refused (422), a duplicate still waiting after ``wait_sec``
gets 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .error_responses import IDEMPOTENCY_IN_PROGRESS, ApiError, invalid
from .kv_claim import Held, claim_key

PENDING = "pending"
DONE = "done"


@dataclass(frozen=True)
class Claim:
    """This request owns the key and must create run ``run_id``."""

    key: str
    revision: int
    run_id: str
    fingerprint: str


@dataclass(frozen=True)
class Replay:
    """An earlier request with the same key created ``run_id``."""

    run_id: str


def record_key(tenant_id: str | None, key: str) -> str:
    """The KV key of an idempotency key: a hash, valid as a KV key whatever the client sent."""
    return hashlib.sha256(f"{tenant_id or ''}\x00{key}".encode()).hexdigest()


class IdempotencyStore:
    """Claims, completes and releases idempotency keys in a KV bucket."""

    def __init__(
        self,
        kv: Any,
        wait_sec: float = 5.0,
        stale_after_sec: float = 30.0,
        poll_interval: float = 0.02,
    ) -> None:
        self.kv = kv
        self.wait_sec = wait_sec
        self.stale_after_sec = stale_after_sec
        self.poll_interval = poll_interval

    @staticmethod
    def _record(state: str, run_id: str, fingerprint: str) -> bytes:
        return json.dumps(
            {"state": state, "run_id": run_id, "fingerprint": fingerprint, "at": time.time()}
        ).encode()

    async def claim(self, tenant_id: str | None, key: str, fingerprint: str) -> Claim | Replay:
        """Claim ``key`` for a new run, or return the run an earlier request created."""
        kv_key = record_key(tenant_id, key)
        deadline = time.monotonic() + self.wait_sec

        def may_take_over(record: dict[str, Any]) -> bool:
            if record.get("fingerprint") != fingerprint:
                raise invalid(
                    "this Idempotency-Key was already used for a different request",
                    [{"field": "Idempotency-Key", "message": "reused with another request"}],
                )
            stale = time.time() - float(record.get("at", 0)) > self.stale_after_sec
            return record.get("state") != DONE and stale

        while True:
            run_id = str(uuid.uuid4())
            data = self._record(PENDING, run_id, fingerprint)
            held = await claim_key(self.kv, kv_key, data, may_take_over)
            if held is None:
                continue  # released or taken over meanwhile: try to claim it again
            if not isinstance(held, Held):
                return Claim(kv_key, held, run_id, fingerprint)
            if held.record.get("state") == DONE:
                return Replay(held.record["run_id"])
            if time.monotonic() >= deadline:
                raise ApiError(
                    409,
                    IDEMPOTENCY_IN_PROGRESS,
                    "a request with this Idempotency-Key is still being processed; retry later",
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(self.poll_interval)

    async def complete(self, claim: Claim) -> None:
        """Mark the claim done: later requests with the key replay ``claim.run_id``."""
        await self.kv.put(claim.key, self._record(DONE, claim.run_id, claim.fingerprint))

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose submit failed, so the client's retry can create the run."""
        await self.kv.delete(claim.key, last=claim.revision)
