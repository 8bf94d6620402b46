"""A lease in a KV bucket: at most one holder at a time among any number of gateways.

The value is ``{"holder", "expires_at"}``; taking or renewing it is a compare-and-set on the
key's revision, so two gateways never both succeed, and a lease whose holder died is taken over
once ``expires_at`` has passed (clocks of the gateways are assumed roughly in step).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


class Lease:
    """The lease ``name`` in the bucket ``kv()`` returns, asked for by ``holder``."""

    def __init__(
        self, kv: Callable[[], Awaitable[Any]], name: str, holder: str, duration_sec: float
    ) -> None:
        self.kv = kv
        self.name = name
        self.holder = holder
        self.duration_sec = duration_sec

    def _value(self) -> bytes:
        return json.dumps(
            {"holder": self.holder, "expires_at": time.time() + self.duration_sec}
        ).encode()

    async def hold(self) -> bool:
        """Take the lease, or renew it if this holder has it; False if another holder has a
        lease that has not expired (or won a race for it just now)."""
        kv = await self.kv()
        try:
            entry = await kv.get(self.name)
        except KeyNotFoundError:
            entry = None
        try:
            if entry is None or entry.value is None:
                await kv.create(self.name, self._value())
                return True
            current = json.loads(entry.value)
            mine = current.get("holder") == self.holder
            if not mine and float(current.get("expires_at", 0)) > time.time():
                return False
            await kv.update(self.name, self._value(), last=entry.revision)
            return True
        except KeyWrongLastSequenceError:
            return False

    async def release(self) -> None:
        """Give the lease up if this holder has it (another gateway may take it at once)."""
        kv = await self.kv()
        try:
            entry = await kv.get(self.name)
            if entry.value is not None and json.loads(entry.value).get("holder") == self.holder:
                await kv.delete(self.name, last=entry.revision)
        except (KeyNotFoundError, KeyWrongLastSequenceError):
            pass
