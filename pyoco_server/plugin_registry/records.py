"""The registry's documents: one per distribution (its releases and pin) and history events.

A distribution document lives in KV under ``dist.<canonical name>``; workers watch those keys.
The *active* release for a worker is the pinned one when a pin is set and its tags match the
worker, otherwise the highest version whose tags match. A release without tags is for every
worker.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from packaging.version import Version

DIST_PREFIX = "dist."
ACTIONS = ("upload", "delete", "pin", "unpin")


@dataclass(frozen=True)
class Release:
    """One stored wheel and who published it."""

    filename: str
    distribution: str
    version: str
    sha256: str
    size: int
    tags: tuple[str, ...] = ()
    entry_points: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    signature: dict[str, str] | None = None
    publisher: dict[str, Any] = field(default_factory=dict)
    published_at: float = 0.0

    def matches(self, worker_tags: list[str] | tuple[str, ...]) -> bool:
        """True when a worker with ``worker_tags`` should install this release."""
        return not self.tags or bool(set(self.tags) & set(worker_tags))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("tags", "entry_points", "requires"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Release:
        return cls(
            filename=str(raw["filename"]),
            distribution=str(raw["distribution"]),
            version=str(raw["version"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            tags=tuple(raw.get("tags") or ()),
            entry_points=tuple(raw.get("entry_points") or ()),
            requires=tuple(raw.get("requires") or ()),
            signature=raw.get("signature"),
            publisher=dict(raw.get("publisher") or {}),
            published_at=float(raw.get("published_at") or 0.0),
        )


@dataclass
class Distribution:
    """Every stored release of one distribution, and its pin."""

    name: str
    releases: list[Release] = field(default_factory=list)
    pinned: str | None = None

    def latest(self) -> Release | None:
        return max(self.releases, key=lambda r: Version(r.version), default=None)

    def release(self, version: str) -> Release | None:
        wanted = Version(version)
        return next((r for r in self.releases if Version(r.version) == wanted), None)

    def active_for(self, worker_tags: list[str] | tuple[str, ...]) -> Release | None:
        """The release a worker with ``worker_tags`` should run (``None``: none of them)."""
        matching = [r for r in self.releases if r.matches(worker_tags)]
        if self.pinned is not None:
            pinned = next((r for r in matching if Version(r.version) == Version(self.pinned)), None)
            if pinned is not None:
                return pinned
        return max(matching, key=lambda r: Version(r.version), default=None)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "pinned": self.pinned,
                "releases": [r.as_dict() for r in self.releases],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Distribution:
        """Parse a stored document; ``ValueError`` when it is not one."""
        try:
            raw = json.loads(data)
            return cls(
                name=str(raw["name"]),
                releases=[Release.from_dict(item) for item in raw.get("releases") or []],
                pinned=raw.get("pinned"),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a plugin registry document: {type(exc).__name__}") from None


def history_event(
    action: str,
    wheel_name: str,
    actor: dict[str, Any],
    release: Release | None = None,
    **extra: Any,
) -> tuple[str, dict[str, Any]]:
    """``(KV key, event)`` for one history entry; keys sort by time."""
    now = time.time()
    event_id = uuid.uuid4().hex
    event = {
        "event_id": event_id,
        "occurred_at": now,
        "action": action,
        "wheel_name": wheel_name,
        "distribution": release.distribution if release else extra.pop("distribution", None),
        "version": release.version if release else extra.pop("version", None),
        "tags": list(release.tags) if release else [],
        "size_bytes": release.size if release else None,
        "sha256_hex": release.sha256 if release else None,
        "key_id": (release.signature or {}).get("key_id") if release else None,
        "actor": actor,
        **extra,
    }
    return f"{int(now * 1000):013d}_{event_id}", event
