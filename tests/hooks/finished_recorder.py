"""Test plugins for ``pyoco_run_finished``: one appends a line per call to the file named by
``PYOCO_TEST_FINISHED_LOG``, the other always raises."""

from __future__ import annotations

import json
import os

from pyoco_server.hookspecs import hookimpl


class Recorder:
    @hookimpl
    def pyoco_run_finished(self, snapshot):
        line = {k: snapshot.get(k) for k in ("run_id", "attempt", "status", "tenant_id")}
        with open(os.environ["PYOCO_TEST_FINISHED_LOG"], "a") as handle:
            handle.write(json.dumps({**line, "pid": os.getpid()}) + "\n")


class Broken:
    @hookimpl
    def pyoco_run_finished(self, snapshot, settings):
        raise RuntimeError(f"archive offline for {snapshot['run_id']}")


recorder = Recorder()
broken = Broken()
