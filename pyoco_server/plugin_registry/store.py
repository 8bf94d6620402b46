"""The registry in NATS JetStream: wheels in an Object Store bucket, one KV document per
distribution (what workers watch), and a KV bucket of history events.

Writes are ordered so a reader never sees a release whose wheel is missing: the wheel is put
first, then the distribution document is updated with compare-and-set (a concurrent publish of
the same distribution retries against the new document), then the history event is appended.
Deleting goes the other way round: document first, wheel last.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any

from nats.js import api
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
    ObjectNotFoundError,
)
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config import Settings
from ..errors import PyocoServerError
from ..log import get_logger
from ..stream_reader import kv_current
from .preflight import WheelFacts, wheel_identity
from .records import ACTIONS, DIST_PREFIX, Distribution, Release, history_event

log = get_logger(__name__)

CAS_ATTEMPTS = 8


class VersionConflict(PyocoServerError):
    """The wheel's version is not above the registry's latest of its distribution (409,
    ERR-PYOCO-0041)."""

    number = 41


class WheelNotFound(PyocoServerError):
    """No such wheel or release in the registry (404, ERR-PYOCO-0043)."""

    number = 43


async def open_object_store(js: Any, settings: Settings) -> Any:
    """The wheels bucket, created when missing."""
    try:
        return await js.object_store(settings.wheel_object_store_bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(
            settings.wheel_object_store_bucket,
            api.ObjectStoreConfig(
                bucket=settings.wheel_object_store_bucket,
                description="pyoco-server plugin wheels",
                replicas=settings.jetstream_replicas,
            ),
        )


def dist_key(distribution: str) -> str:
    return DIST_PREFIX + canonicalize_name(distribution)


async def read_distribution(kv: Any, distribution: str) -> tuple[Distribution, int]:
    """The stored document of ``distribution`` and its revision (empty and 0 when absent)."""
    try:
        entry = await kv.get(dist_key(distribution))
    except KeyNotFoundError:
        return Distribution(canonicalize_name(distribution)), 0
    if entry.value is None:
        return Distribution(canonicalize_name(distribution)), entry.revision
    return Distribution.decode(entry.value), entry.revision


async def _write(kv: Any, doc: Distribution, revision: int) -> None:
    key = dist_key(doc.name)
    if revision == 0:
        await kv.create(key, doc.encode())
    else:
        await kv.update(key, doc.encode(), last=revision)


def wheel_view(release: Release, doc: Distribution) -> dict[str, Any]:
    """A release as ``GET /wheels`` lists it (0.5.1's fields first, then ours)."""
    latest = doc.latest()
    sha256_b64 = base64.urlsafe_b64encode(bytes.fromhex(release.sha256)).decode()
    return {
        "name": release.filename,
        "size_bytes": release.size,
        "digest": f"SHA-256={sha256_b64}",
        "sha256_b64": sha256_b64,
        "sha256_hex": release.sha256,
        "tags": list(release.tags),
        "mtime": release.published_at,
        "distribution": release.distribution,
        "version": release.version,
        "entry_points": list(release.entry_points),
        "requires": list(release.requires),
        "signed": bool(release.signature),
        "key_id": (release.signature or {}).get("key_id"),
        "publisher": release.publisher,
        "published_at": release.published_at,
        "latest": latest is not None and latest.version == release.version,
        "pinned": doc.pinned is not None and Version(doc.pinned) == Version(release.version),
    }


class PluginRegistry:
    """Registry operations of the gateway (the worker only reads, see ``worker.plugin_sync``)."""

    def __init__(self, js: Any, settings: Settings) -> None:
        self.js = js
        self.settings = settings

    async def _kv(self) -> Any:
        return await self.js.key_value(self.settings.plugin_registry_kv_bucket)

    async def _history_kv(self) -> Any:
        return await self.js.key_value(self.settings.wheel_history_kv_bucket)

    async def distributions(self) -> list[Distribution]:
        """Every distribution document."""
        kv = await self._kv()
        docs: list[Distribution] = []
        for key, value in await kv_current(kv, DIST_PREFIX + ">"):
            try:
                docs.append(Distribution.decode(value))
            except ValueError as exc:
                log.error("plugin_registry_document_corrupt", key=key, error=str(exc))
        return sorted(docs, key=lambda d: d.name)

    async def list(self) -> list[dict[str, Any]]:
        """Every stored wheel, by distribution then version."""
        items = []
        for doc in await self.distributions():
            for release in sorted(doc.releases, key=lambda r: Version(r.version)):
                items.append(wheel_view(release, doc))
        return items

    async def publish(
        self,
        facts: WheelFacts,
        data: bytes,
        tags: list[str],
        signature: dict[str, str] | None,
        actor: dict[str, Any],
        replace: bool = True,
    ) -> dict[str, Any]:
        """Store a wheel; raise :class:`VersionConflict` unless its version is above the
        latest stored version of its distribution. ``replace`` (0.5.1) is accepted for
        compatibility: a stored release is never replaced (same version → 409)."""
        kv = await self._kv()
        doc, _ = await read_distribution(kv, facts.distribution)
        self._check_newer(doc, facts, replace)
        release = Release(
            filename=facts.filename,
            distribution=facts.distribution,
            version=facts.version,
            sha256=facts.sha256,
            size=facts.size,
            tags=tuple(tags),
            entry_points=facts.entry_points,
            requires=facts.requires,
            signature=signature,
            publisher=actor,
            published_at=time.time(),
        )
        store = await open_object_store(self.js, self.settings)
        await store.put(
            facts.filename,
            data,
            meta=api.ObjectMeta(
                name=facts.filename,
                headers={
                    "sha256": facts.sha256,
                    "x-pyoco-wheel-tags": ",".join(tags),
                    "content-type": "application/octet-stream",
                },
            ),
        )
        for _ in range(CAS_ATTEMPTS):
            doc, revision = await read_distribution(kv, facts.distribution)
            try:
                self._check_newer(doc, facts, replace)
            except VersionConflict:
                # A concurrent publish won: unless it stored this very filename, the wheel
                # just stored belongs to no release.
                if all(r.filename != facts.filename for r in doc.releases):
                    with contextlib.suppress(Exception):
                        await store.delete(facts.filename)
                raise
            doc.releases.append(release)
            try:
                await _write(kv, doc, revision)
                break
            except KeyWrongLastSequenceError:
                continue
        else:
            raise VersionConflict(f"{facts.distribution} kept changing; publish again")
        await self._append_history(
            history_event("upload", facts.filename, actor, release, replace=replace)
        )
        log.info(
            "plugin_wheel_published",
            wheel=facts.filename,
            sha256=facts.sha256,
            signed=bool(signature),
            tags=tags,
            **{f"actor_{k}": v for k, v in actor.items()},
        )
        return wheel_view(release, doc)

    @staticmethod
    def _check_newer(doc: Distribution, facts: WheelFacts, replace: bool) -> None:
        latest = doc.latest()
        if latest is None:
            return
        if Version(latest.version) >= facts.parsed_version:
            same = Version(latest.version) == facts.parsed_version
            hint = "" if same or replace else " (--no-replace)"
            raise VersionConflict(
                f"{facts.distribution} {facts.version} is not newer than the registry's latest "
                f"{latest.version}{hint}: bump the version (to go back, delete the newer "
                "release or pin an older one)"
            )

    async def download(self, filename: str) -> bytes:
        """The bytes of a stored wheel."""
        store = await open_object_store(self.js, self.settings)
        try:
            result = await store.get(filename)
        except (ObjectNotFoundError, NotFoundError):
            raise WheelNotFound(f"no wheel {filename!r} in the registry") from None
        return result.data or b""

    async def delete(self, filename: str, actor: dict[str, Any]) -> dict[str, Any]:
        """Remove one release (its document entry, then its wheel); workers fall back to the
        pinned or next-highest version."""
        try:
            distribution, _ = wheel_identity(filename)
        except ValueError:
            raise WheelNotFound(f"no wheel {filename!r} in the registry") from None
        kv = await self._kv()
        for _ in range(CAS_ATTEMPTS):
            doc, revision = await read_distribution(kv, distribution)
            release = next((r for r in doc.releases if r.filename == filename), None)
            if release is None:
                raise WheelNotFound(f"no wheel {filename!r} in the registry")
            doc.releases.remove(release)
            if doc.pinned is not None and Version(doc.pinned) == Version(release.version):
                doc.pinned = None
            try:
                await _write(kv, doc, revision)
                break
            except KeyWrongLastSequenceError:
                continue
        else:
            raise VersionConflict(f"{distribution} kept changing; delete again")
        store = await open_object_store(self.js, self.settings)
        with contextlib.suppress(ObjectNotFoundError, NotFoundError):
            await store.delete(filename)
        await self._append_history(history_event("delete", filename, actor, release))
        log.info("plugin_wheel_deleted", wheel=filename, sha256=release.sha256)
        return {"name": filename, "deleted": True}

    async def pin(
        self, distribution: str, version: str | None, actor: dict[str, Any]
    ) -> dict[str, Any]:
        """Pin ``distribution`` to ``version`` (``None`` removes the pin)."""
        try:
            wanted = None if version is None else str(Version(version))
        except InvalidVersion:
            raise WheelNotFound(f"{version!r} is not a version") from None
        kv = await self._kv()
        for _ in range(CAS_ATTEMPTS):
            doc, revision = await read_distribution(kv, distribution)
            release = None if wanted is None else doc.release(wanted)
            if not doc.releases or (wanted is not None and release is None):
                raise WheelNotFound(
                    f"no release {distribution}=={version} in the registry"
                    if version
                    else f"no distribution {distribution!r} in the registry"
                )
            doc.pinned = wanted
            try:
                await _write(kv, doc, revision)
                break
            except KeyWrongLastSequenceError:
                continue
        else:
            raise VersionConflict(f"{distribution} kept changing; pin again")
        action = "pin" if wanted else "unpin"
        await self._append_history(
            history_event(
                action,
                release.filename if release else "",
                actor,
                release,
                distribution=doc.name,
                version=wanted,
            )
        )
        log.info("plugin_pinned", distribution=doc.name, version=wanted)
        return {"distribution": doc.name, "pinned": wanted}

    async def _append_history(self, key_event: tuple[str, dict[str, Any]]) -> None:
        key, event = key_event
        kv = await self._history_kv()
        await kv.put(key, json.dumps(event, separators=(",", ":")).encode())

    async def history(
        self, limit: int = 100, wheel_name: str | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        """History events, newest first."""
        if action is not None and action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        kv = await self._history_kv()
        events: list[dict[str, Any]] = []
        for _, value in await kv_current(kv):
            try:
                event = json.loads(value)
            except ValueError:
                continue
            if wheel_name and event.get("wheel_name") != wheel_name:
                continue
            if action and event.get("action") != action:
                continue
            events.append(event)
        events.sort(key=lambda e: (e.get("occurred_at") or 0, e.get("event_id") or ""))
        return events[::-1][:limit]
