"""Where a gateway keeps its run index (:class:`~.run_index.RunIndex`) between starts.

``PYOCO_INDEX_DIR`` unset (the default) keeps it in the user's state directory,
``$XDG_STATE_HOME/pyoco-server`` or ``~/.local/state/pyoco-server`` (created ``0700``: the index
holds run summaries). A directory given in ``PYOCO_INDEX_DIR`` is used as it is;
``PYOCO_INDEX_DIR=temp`` gives every start a throwaway index in a temporary directory (built from
the whole stream, removed at exit).

The file name carries the bucket and a key of the NATS servers' addresses (host and port only:
credentials never reach a file name), so two systems never share a file; a same-named bucket
on another server behind the same address is told apart by its stream's creation time
(:meth:`~.run_index.RunIndexFeed.sync`). Each file is held with an exclusive lock while a
gateway uses it: a second gateway on the same host takes the next of :data:`SLOTS` files — its
own, kept between its starts too — and only when all are held does it fall back to a temporary
index.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import INDEX_DIR_TEMPORARY, Settings
from ..log import get_logger
from ..nats_client import nats_servers
from .run_index import RunIndex

log = get_logger(__name__)

#: Sub-directory of the user's state directory holding the index files.
STATE_DIR_NAME = "pyoco-server"
#: Index files per bucket and NATS address in one directory: gateways on one host at once.
SLOTS = 8
#: The server a gateway without ``PYOCO_NATS_URL`` connects to (part of the file's key).
DEFAULT_NATS_ADDRESS = "nats://127.0.0.1:4222"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/pyoco-server``, or ``~/.local/state/pyoco-server`` when that variable
    is unset or not an absolute path (as the XDG base directory specification says)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / STATE_DIR_NAME


def server_key(nats_url: str | None) -> str:
    """A short key of the NATS servers' ``host:port`` addresses (order and credentials
    ignored)."""
    addresses = []
    for server in nats_servers(nats_url or DEFAULT_NATS_ADDRESS):
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        addresses.append(f"{parts.hostname or ''}:{parts.port or 4222}")
    return hashlib.sha256(",".join(sorted(addresses)).encode()).hexdigest()[:12]


def index_file(directory: Path, bucket: str, nats_url: str | None, slot: int) -> Path:
    """The index file of ``bucket`` on the servers of ``nats_url``, in ``slot``."""
    suffix = f".{slot}" if slot else ""
    return directory / f"runs-index-{bucket}-{server_key(nats_url)}{suffix}.sqlite3"


def open_index(settings: Settings) -> RunIndex:
    """The run index a gateway with ``settings`` uses: the first free slot's file in its
    directory (see the module's docstring), or a temporary one.

    A file SQLite cannot read is rebuilt from NATS.
    """
    bucket, depth = settings.runs_kv_bucket, settings.max_nesting_depth
    if settings.index_dir == INDEX_DIR_TEMPORARY:
        return _temporary_index(bucket, depth)
    try:
        directory = Path(settings.index_dir) if settings.index_dir else default_state_dir()
        _make_private_dir(directory, tighten=settings.index_dir is None)
    except (OSError, RuntimeError) as exc:  # RuntimeError: no home directory to be found
        log.warning("run_index_dir_unusable", index_dir=settings.index_dir, error=str(exc))
        return _temporary_index(bucket, depth)
    for slot in range(SLOTS):
        path = index_file(directory, bucket, settings.nats_url, slot)
        lock = _try_lock(Path(f"{path}.lock"))
        if lock is None:
            continue
        try:
            index = _open_file(bucket, path, depth)
        except BaseException:
            lock.close()
            raise
        index.on_close(lock.close)
        log.info("run_index_opened", path=str(path), slot=slot, applied_seq=index.applied_seq)
        return index
    log.warning("run_index_slots_in_use", directory=str(directory), slots=SLOTS)
    return _temporary_index(bucket, depth)


def _make_private_dir(directory: Path, tighten: bool) -> None:
    """Create ``directory`` (mode ``0700``); with ``tighten``, also make an existing one
    private when this user owns it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tighten and directory.stat().st_uid == os.getuid():
        directory.chmod(0o700)


def _open_file(bucket: str, path: Path, depth: int) -> RunIndex:
    try:
        return RunIndex(bucket, path, depth)
    except sqlite3.DatabaseError as exc:
        log.warning("run_index_unreadable_rebuilding", path=str(path), error=str(exc))
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()
        return RunIndex(bucket, path, depth)


def _temporary_index(bucket: str, depth: int) -> RunIndex:
    """A private index in a new temporary directory, removed when the index is closed."""
    scratch = tempfile.mkdtemp(prefix="pyoco-run-index-")
    index = RunIndex(bucket, Path(scratch) / "runs-index.sqlite3", depth)
    index.on_close(lambda: shutil.rmtree(scratch, ignore_errors=True))
    log.info("run_index_opened", path=str(index.path), slot=None, applied_seq=0)
    return index


def _try_lock(path: Path) -> Any:
    """An open file holding an exclusive lock on ``path``, or ``None`` if another process
    holds it (the lock ends when the file is closed or the process dies)."""
    handle = open(path, "a+")  # noqa: SIM115 (held until the index is closed)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
