"""The sync state of each plugin, as the worker's record shows it under ``plugins``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

OK = "ok"
VERIFYING = "verifying"
FAILED = "failed"


@dataclass
class PluginStatus:
    """One distribution on one worker.

    ``version`` is the release the registry asks for; ``active_version`` the one execution
    processes load (it differs while a new release is verified, or after it failed: a
    refused release never replaces a working one). ``reason`` says why a release failed
    (``unsigned``, ``untrusted_key``, ``bad_signature``, ``checksum_mismatch``,
    ``missing_dependency``, ``incompatible``, ``invalid_wheel``, ``download_failed``).
    """

    distribution: str
    version: str | None
    state: str
    reason: str | None = None
    detail: str | None = None
    active_version: str | None = None
    sha256: str | None = None
    key_id: str | None = None
    entry_points: tuple[str, ...] = ()
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["entry_points"] = list(self.entry_points)
        return data


class StatusBoard:
    """Every distribution's :class:`PluginStatus`; ``on_change`` runs after each update (the
    host uses it to rewrite its record promptly)."""

    def __init__(self, on_change: Any = None) -> None:
        self._items: dict[str, PluginStatus] = {}
        self.on_change = on_change

    def set(self, status: PluginStatus) -> None:
        status.updated_at = time.time()
        self._items[status.distribution] = status
        if self.on_change is not None:
            self.on_change()

    def get(self, distribution: str) -> PluginStatus | None:
        return self._items.get(distribution)

    def remove(self, distribution: str) -> None:
        if self._items.pop(distribution, None) is not None and self.on_change is not None:
            self.on_change()

    def as_list(self) -> list[dict[str, Any]]:
        return [self._items[name].as_dict() for name in sorted(self._items)]
