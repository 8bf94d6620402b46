"""Snapshot writes of a worker: :class:`RunStore` plus a missing bucket told apart.

nats-py reports a key lookup in a deleted bucket as "key not found", so ``RunStore`` raises
:class:`RunNotFound` for both a run that does not exist and a runs bucket that is gone. For a
worker the difference matters: the first means "do not run this job", the second is a NATS
failure to wait out (NAK with delay), never a reason to drop a run.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..nats_client import NatsConnection
from ..run_store import Change, RunNotFound, RunStore


class RunsBucketMissing(RuntimeError):
    """The runs KV bucket does not exist (deleted, or lost with a NATS server's storage)."""


class WorkerRunStore:
    """``update`` like :meth:`RunStore.update`; raises :class:`RunsBucketMissing` when due."""

    def __init__(self, store: RunStore, nats: NatsConnection, settings: Settings) -> None:
        self.store = store
        self.nats = nats
        self.settings = settings

    async def update(
        self,
        run_id: str,
        change: Change,
        event: str,
        job: dict[str, Any] | None = None,
        known: tuple[dict[str, Any], int] | None = None,
    ) -> tuple[dict[str, Any], int]:
        try:
            return await self.store.update(run_id, change, event, job, known=known)
        except RunNotFound:
            if not await self._bucket_exists():
                raise RunsBucketMissing(
                    f"KV bucket {self.settings.runs_kv_bucket!r} is missing"
                ) from None
            raise

    async def _bucket_exists(self) -> bool:
        try:
            await self.nats.js.stream_info(f"KV_{self.settings.runs_kv_bucket}")
        except Exception:
            return False
        return True
