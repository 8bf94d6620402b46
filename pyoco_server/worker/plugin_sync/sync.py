"""Follow the plugin registry by a KV watch and keep this worker's plugin set current.

The watch delivers every distribution document at start and each change as it is written (no
polling). For each document the worker picks the release for its tags (pinned, else latest);
when that differs from what it runs, it downloads the wheel from the Object Store, verifies
and unpacks it (:mod:`.installer`) off the event loop, and publishes a new
:class:`~.plugin_set.PluginSet` through ``on_set``. The host hands the set to its execution
pool, which switches processes between runs. A refused or failed release never replaces a
working one: the previous version stays active and the status says why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors

from ...config import Settings
from ...errors import err_id, msg_id
from ...log import get_logger
from ...plugin_registry.records import DIST_PREFIX, Distribution, Release
from ...plugin_registry.signing import SignatureRefused, TrustedKeys
from ...plugin_registry.store import open_object_store
from .installer import InstallFailed, install, remove_leftovers
from .plugin_set import PluginSet
from .status import FAILED, OK, VERIFYING, PluginStatus, StatusBoard

log = get_logger(__name__)

#: Longest wait for one watch update before looking at the stop event again.
WATCH_WAIT_SEC = 1.0
#: Waits between attempts to (re)open the watch after NATS trouble.
RETRY_DELAYS_SEC = (0.5, 1.0, 2.0, 5.0)


def _reconnects(nats_connection: Any) -> int:
    """How often the NATS client has reconnected so far."""
    client = getattr(nats_connection, "nc", None)
    return int(client.stats.get("reconnects", 0)) if client is not None else 0


def _directory_name(release: Release) -> str:
    """The name of the directory :func:`.installer.install` unpacks ``release`` into."""
    return f"{release.version}-{release.sha256[:12]}"


class PluginSync:
    """One worker's follower of the registry.

    :param on_set: called with each new :class:`PluginSet` (after the manifest is saved).
    :param board: where statuses go (the worker's record shows them).
    """

    def __init__(
        self,
        settings: Settings,
        tags: list[str],
        trusted: TrustedKeys,
        root: Path,
        on_set: Callable[[PluginSet], None],
        board: StatusBoard,
    ) -> None:
        self.settings = settings
        self.tags = list(tags)
        self.trusted = trusted
        self.root = root
        self.on_set = on_set
        self.board = board
        self.current = PluginSet.load(root, set(trusted.keys))
        self.state = "starting"

    def summary(self) -> dict[str, Any]:
        """The sync's own state for the worker record (``plugin_sync``)."""
        return {
            "state": self.state,
            "trusted_key_ids": sorted(self.trusted.keys),
            "directory": str(self.root),
        }

    async def run(self, nats_connection: Any, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; reopen the watch after NATS trouble (bounded waits)."""
        removed = await asyncio.to_thread(remove_leftovers, self.root)
        if removed:
            log.info("plugin_sync_leftovers_removed", directories=removed)
        attempt = 0
        while not stop.is_set():
            try:
                await self._watch(nats_connection, stop)
                attempt = 0
            except Exception as exc:
                self.state = "disconnected"
                log.warning("plugin_sync_watch_failed", error=f"{type(exc).__name__}: {exc}")
                delay = RETRY_DELAYS_SEC[min(attempt, len(RETRY_DELAYS_SEC) - 1)]
                attempt += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _watch(self, nats_connection: Any, stop: asyncio.Event) -> None:
        kv = await nats_connection.kv(self.settings.plugin_registry_kv_bucket)
        reconnects = _reconnects(nats_connection)
        watcher = await kv.watch(DIST_PREFIX + ">")
        self.state = "watching"
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=WATCH_WAIT_SEC)
                except (asyncio.TimeoutError, nats.errors.TimeoutError):
                    if not nats_connection.connected:
                        raise ConnectionError("NATS connection lost") from None
                    if _reconnects(nats_connection) != reconnects:
                        # The watch's consumer may not have survived a server restart: open a
                        # new one, which replays every document (unchanged ones are no-ops).
                        log.info("plugin_sync_watch_reopened")
                        return
                    continue
                if entry is None:  # every document present at start has been delivered
                    continue
                await self._apply(nats_connection, entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _apply(self, nats_connection: Any, entry: Any) -> None:
        name = entry.key[len(DIST_PREFIX) :]
        doc = None
        if entry.value and getattr(entry, "operation", None) not in ("DEL", "PURGE"):
            try:
                doc = Distribution.decode(entry.value)
            except ValueError as exc:
                log.error("plugin_registry_document_corrupt", key=entry.key, error=str(exc))
                return
        release = doc.active_for(self.tags) if doc is not None else None
        running = self.current.members.get(name)
        if release is None:
            if running is not None:
                log.info("plugin_removed", distribution=name, version=running[0])
                self._publish(self.current.without(name))
            self.board.remove(name)
            return
        status = self.board.get(name)
        if (
            running is not None
            and status is not None  # verified by this process, not only at an earlier start
            and Path(running[1]).name == _directory_name(release)
        ):
            if status.state != OK or status.version != release.version:
                self._ok(release, running[1], status.key_id)
            return
        if status is not None and status.state == FAILED and status.sha256 == release.sha256:
            return  # the same refused bytes again: the status already says why
        await self._install(nats_connection, release)

    async def _install(self, nats_connection: Any, release: Release) -> None:
        running = self.current.members.get(release.distribution)
        self.board.set(
            PluginStatus(
                release.distribution,
                release.version,
                VERIFYING,
                active_version=running[0] if running else None,
                sha256=release.sha256,
                entry_points=release.entry_points,
            )
        )
        try:
            store = await open_object_store(nats_connection.js, self.settings)
            data = (await store.get(release.filename)).data or b""
        except Exception as exc:
            self._failed(release, "download_failed", f"{type(exc).__name__}: {exc}", 45)
            return
        others = [path for name, (_, path) in self.current.members.items()]
        try:
            path, key_id = await asyncio.to_thread(
                install,
                release,
                data,
                self.root,
                self.trusted,
                self.settings.wheel_max_bytes,
                others,
            )
        except SignatureRefused as exc:
            self._failed(release, exc.reason, str(exc), exc.number)
            return
        except InstallFailed as exc:
            self._failed(release, exc.reason, str(exc), exc.number)
            return
        except Exception as exc:
            self._failed(release, "install_error", f"{type(exc).__name__}: {exc}", 45)
            return
        self._publish(self.current.with_member(release.distribution, release.version, str(path)))
        self._ok(release, str(path), key_id)
        log.info(
            "plugin_synced",
            distribution=release.distribution,
            version=release.version,
            sha256=release.sha256,
            key_id=key_id,
        )

    def _publish(self, plugin_set: PluginSet) -> None:
        if plugin_set == self.current:
            return  # re-verified what already runs (after a restart): nothing to switch
        self.current = plugin_set
        plugin_set.save(self.root)
        self.on_set(plugin_set)

    def _ok(self, release: Release, path: str, key_id: str | None) -> None:
        self.board.set(
            PluginStatus(
                release.distribution,
                release.version,
                OK,
                active_version=release.version,
                sha256=release.sha256,
                key_id=key_id,
                entry_points=release.entry_points,
            )
        )

    def _failed(self, release: Release, reason: str, detail: str, number: int) -> None:
        running = self.current.members.get(release.distribution)
        log.error(
            "plugin_refused",
            distribution=release.distribution,
            version=release.version,
            reason=reason,
            error=detail,
            active_version=running[0] if running else None,
            err_id=err_id(number),
            msg_id=msg_id(number),
        )
        self.board.set(
            PluginStatus(
                release.distribution,
                release.version,
                FAILED,
                reason=reason,
                detail=detail,
                active_version=running[0] if running else None,
                sha256=release.sha256,
                entry_points=release.entry_points,
            )
        )
