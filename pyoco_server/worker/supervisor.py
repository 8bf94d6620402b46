"""The worker that ``pyoco-server up --with-worker`` runs next to the gateway.

A thread starts ``python -m pyoco_server.cli.worker`` and starts it again when it dies (a
non-zero exit or a signal), waiting longer after each quick death. A worker that exits 0 was
stopped on purpose (SIGTERM/SIGINT) and is left stopped. The NATS URL travels in the
environment, never on the command line (``ps`` would show its credentials).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..log import get_logger

log = get_logger(__name__)

#: Waits before restarting a worker that died; reset once it has run for a minute.
RESTART_DELAYS_SEC = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_AFTER_SEC = 60.0


def worker_command(
    *,
    tags: str | None = None,
    flow_resolver: str | None = None,
    plugins: str | None = None,
    plugin_switches: Sequence[str] = (),
    worker_id: str | None = None,
    poll_timeout: float | None = None,
) -> list[str]:
    """The ``pyoco-worker`` command line for the given ``up`` flags."""
    command = [sys.executable, "-m", "pyoco_server.cli.worker", "--exit-with-parent"]
    if worker_id:
        command += ["--worker-id", worker_id]
    if poll_timeout is not None:
        command += ["--poll-timeout", str(poll_timeout)]
    if tags:
        command += ["--tags", tags]
    if flow_resolver:
        command += ["--flow-resolver", flow_resolver]
    if plugins is not None:
        command += ["--plugins", plugins]
    for switch in plugin_switches:
        command += ["-p", switch]
    return command


class WorkerSupervisor:
    """Keeps one worker process running until :meth:`stop`."""

    def __init__(self, command: list[str], env: dict[str, str], stop_timeout: float) -> None:
        self.command = command
        self.env = env
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pyoco-worker-supervisor")

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stop.is_set():
                return None
            self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL)
            self.starts += 1
            log.info("worker_process_started", pid=self.process.pid, starts=self.starts)
            return self.process

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            process = self._spawn()
            if process is None:
                return
            code = process.wait()
            if self._stop.is_set():
                return
            if code == 0:
                log.info("worker_process_exited", pid=process.pid, code=code)
                return
            failures = 0 if time.monotonic() - started > HEALTHY_AFTER_SEC else failures + 1
            delay = RESTART_DELAYS_SEC[min(failures, len(RESTART_DELAYS_SEC)) - 1]
            log.warning("worker_process_died", pid=process.pid, code=code, restart_in_sec=delay)
            self._stop.wait(delay)

    def stop(self) -> None:
        """Stop the worker gracefully (SIGTERM), killing it after ``stop_timeout``."""
        with self._lock:
            self._stop.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker_process_killed", pid=process.pid)
                process.kill()
                process.wait(5)
        if self._thread.is_alive():
            self._thread.join(5)


def start_worker(args: Any, nats_url: str, grace_period_sec: float) -> WorkerSupervisor:
    """Start the supervised worker for ``pyoco-server up`` (its parsed ``args``)."""
    command = worker_command(
        tags=args.worker_tags,
        flow_resolver=args.worker_flow_resolver,
        plugins=args.plugins,
        plugin_switches=args.plugin_switches,
        worker_id=args.worker_id,
        poll_timeout=args.worker_poll_timeout,
    )
    env = {**os.environ, "PYOCO_NATS_URL": nats_url}
    if args.log_level:
        env["PYOCO_LOG_LEVEL"] = args.log_level  # up --log-level covers its worker too
    supervisor = WorkerSupervisor(command, env, stop_timeout=grace_period_sec + 10.0)
    supervisor.start()
    return supervisor
