"""``--plugin-sync`` options, importable without what syncing needs (cryptography, packaging):
the host imports the sync machinery only when the option is on (docs/worker.md, "Memory")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def sync_root(directory: str, worker_id: str) -> Path:
    """The directory a worker unpacks its synced wheels into."""
    return Path(os.path.abspath(directory)) / worker_id


@dataclass
class PluginSyncOptions:
    """``--plugin-sync`` settings of one worker."""

    directory: str
    trusted_keys: tuple[str, ...] = field(default_factory=tuple)
    trusted_source: str = "PYOCO_PLUGIN_TRUSTED_KEYS"
