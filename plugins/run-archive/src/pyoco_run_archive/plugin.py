"""The plugin object: archives every finished run into ``PYOCO_RUN_ARCHIVE_PATH``."""

from __future__ import annotations

import os
from typing import Any

from pyoco_server.hookspecs import hookimpl

from .archive import RunArchive

PATH_ENV = "PYOCO_RUN_ARCHIVE_PATH"


class RunArchivePlugin:
    """Writes each run the gateway reports finished to a :class:`RunArchive`; does nothing
    while ``PYOCO_RUN_ARCHIVE_PATH`` is unset (so installing it alone changes nothing)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._archive: RunArchive | None = None

    @classmethod
    def from_env(cls) -> RunArchivePlugin:
        return cls(os.environ.get(PATH_ENV, "").strip() or None)

    @hookimpl
    def pyoco_run_finished(self, snapshot: dict[str, Any]) -> None:
        if self.path is None:
            return
        if self._archive is None:
            self._archive = RunArchive(self.path)
        self._archive.add(snapshot)


plugin = RunArchivePlugin.from_env()
