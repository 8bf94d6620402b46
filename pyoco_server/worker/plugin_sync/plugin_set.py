"""The set of synced plugin directories that execution processes load.

An execution process puts :attr:`PluginSet.paths` first on ``sys.path`` before it builds its
plugin manager; each directory holds one unpacked wheel with its ``*.dist-info``, so
``importlib.metadata`` finds its entry points like those of a pip-installed distribution, and
``--plugins`` / ``-p no:NAME`` select among them the same way.

The set is also written to ``manifest.json`` in the sync directory, so a restarted host starts
its execution processes (and its own plugin manager) with the last verified set at once.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .installer import KEY_MARKER

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PluginSet:
    """Directories to load, by distribution: ``{distribution: (version, path)}``."""

    members: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def paths(self) -> list[str]:
        return [self.members[name][1] for name in sorted(self.members)]

    def with_member(self, distribution: str, version: str, path: str) -> PluginSet:
        return PluginSet({**self.members, distribution: (version, path)})

    def without(self, distribution: str) -> PluginSet:
        return PluginSet({k: v for k, v in self.members.items() if k != distribution})

    def save(self, root: Path) -> None:
        """Write the manifest atomically."""
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps({k: list(v) for k, v in self.members.items()}))
        os.replace(tmp, root / MANIFEST)

    @classmethod
    def load(cls, root: Path, trusted_key_ids: set[str]) -> PluginSet:
        """The last saved set, without directories that vanished or whose wheel was signed by
        a key no longer in ``trusted_key_ids``; empty when none."""
        try:
            raw: Any = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        members = {
            str(name): (str(item[0]), str(item[1]))
            for name, item in raw.items()
            if isinstance(item, list)
            and len(item) == 2
            and _signed_by(Path(str(item[1])), trusted_key_ids)
        }
        return cls(members)


def _signed_by(directory: Path, trusted_key_ids: set[str]) -> bool:
    try:
        return (directory / KEY_MARKER).read_text().strip() in trusted_key_ids
    except OSError:
        return False


def activate(paths: list[str]) -> None:
    """Put ``paths`` first on ``sys.path`` (in an execution process, before plugins load)."""
    sys.path[0:0] = [path for path in paths if path not in sys.path]


def select_available(names: list[str] | None) -> list[str] | None:
    """``--plugins`` (or ``-p NAME``) names minus entry-point names that no installed or
    synced wheel provides yet.

    A worker with ``--plugin-sync --plugins team-flows`` must start (and keep serving its other
    plugins) before ``team-flows`` has been published or verified; the name is loaded as soon
    as a synced set provides it. Import paths and files are kept as they are.
    """
    if names is None:
        return None
    from ...log import get_logger
    from ...plugins import BUILTIN_PLUGINS, entry_point_names

    known = entry_point_names() | set(BUILTIN_PLUGINS)
    pending = [n for n in names if n not in known and not any(c in n for c in "./:")]
    if pending:
        get_logger(__name__).warning("plugins_not_synced_yet", plugins=pending)
    return [name for name in names if name not in pending]
