"""Test hook: die exactly between two steps of the run tree's multi-step operations.

``PYOCO_TEST_CRASH_AT=<point>`` makes the process that reaches ``<point>`` kill itself with
SIGKILL (no cleanup, like ``kill -9``), so a fault test can stop a gateway exactly between a
publish and the snapshot write that follows it (a parent's resumption, an approval). Unset
(the default) it costs one dict lookup; never set it outside tests.
"""

from __future__ import annotations

import os
import signal

from ..log import get_logger

CRASH_ENV = "PYOCO_TEST_CRASH_AT"
#: A resumable parent was noted; its resumption job is not published yet.
BEFORE_RESUME_PUBLISH = "before_resume_publish"
#: The resumption job is published; the parent is not written PENDING yet.
BEFORE_RESUME_WRITE = "before_resume_write"
#: An approved bundle run's job is published; the approval is not written yet.
BEFORE_APPROVAL_WRITE = "before_approval_write"

log = get_logger(__name__)


def crash_point(point: str) -> None:
    """Kill this process with SIGKILL when ``PYOCO_TEST_CRASH_AT`` names ``point``."""
    if os.environ.get(CRASH_ENV) == point:
        log.warning("test_crash_point", point=point)
        os.kill(os.getpid(), signal.SIGKILL)
