"""What the worker host calls: the one place plugin sync meets the host.

The host (1) passes its execution-pool configuration through :meth:`pool_config`, which adds
``plugin_paths`` (the current :class:`~.plugin_set.PluginSet`); (2) starts :meth:`run` next to
its other loops with the pool, whose ``use_config`` then receives each new set and switches
execution processes between runs; (3) adds :meth:`record_fields` (``plugins``,
``plugin_sync``) to its record in ``pyoco_workers``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...config import Settings
from ...plugin_registry.signing import TrustedKeys
from .options import PluginSyncOptions, sync_root
from .plugin_set import PluginSet
from .status import StatusBoard
from .sync import PluginSync


class PluginSyncService:
    """Plugin sync for one worker host."""

    def __init__(
        self,
        settings: Settings,
        options: PluginSyncOptions,
        worker_id: str,
        tags: list[str],
        on_status: Any = None,
    ) -> None:
        self.trusted = TrustedKeys.load(options.trusted_keys, options.trusted_source)
        self.root = sync_root(options.directory, worker_id)
        self.board = StatusBoard(on_status)
        self._pool: Any = None
        self.sync = PluginSync(settings, tags, self.trusted, self.root, self._switch, self.board)

    @property
    def current(self) -> PluginSet:
        return self.sync.current

    def pool_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` plus the current plugin directories."""
        return {**config, "plugin_paths": self.current.paths}

    def _switch(self, plugin_set: PluginSet) -> None:
        if self._pool is not None:
            self._pool.use_config({**self._pool.config, "plugin_paths": plugin_set.paths})

    async def run(self, nats_connection: Any, stop: asyncio.Event, pool: Any) -> None:
        """Follow the registry until ``stop``; new sets go to ``pool.use_config``."""
        self._pool = pool
        await self.sync.run(nats_connection, stop)

    def record_fields(self) -> dict[str, Any]:
        """Fields for the worker's record."""
        return {"plugins": self.board.as_list(), "plugin_sync": self.sync.summary()}
