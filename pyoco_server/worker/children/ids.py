"""Deterministic child run ids: the same parent, task and index always name the same child.

A parent that is redelivered or resumed runs its spawning task again; the ids it computes are
the ids of the children it created before, so it re-attaches to them instead of creating new
ones (the KV create of an existing id fails and nothing is published twice).
"""

from __future__ import annotations

import hashlib
import re

#: Task names used as they are in an id; anything else is replaced by a digest.
_PLAIN_TASK = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")
#: Longest readable child id; a longer one (deep trees) becomes a digest.
MAX_READABLE_ID_CHARS = 128


def child_run_id(parent_run_id: str, task: str, index: int) -> str:
    """``<parent>.<task>.<index>``, or ``c-<sha256>`` when that would be too long.

    ``.`` never occurs in a task part (names outside ``[A-Za-z0-9_-]`` are digested), so two
    different (parent, task, index) triples never give the same id.
    """
    part = task if _PLAIN_TASK.match(task) else "t" + _digest(task)[:16]
    readable = f"{parent_run_id}.{part}.{index}"
    if len(readable) <= MAX_READABLE_ID_CHARS:
        return readable
    return "c-" + _digest(f"{parent_run_id}\n{task}\n{index}")[:40]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
