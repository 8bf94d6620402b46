"""Gateway and worker processes for tests and benchmarks: start, wait until ready, stop.

Usable without pytest. Every child runs with a clean environment (the caller's ``PYOCO_*``
variables removed) plus the settings it is given (:meth:`Settings.to_env`), writes its output
to its own log file, and on Linux is stopped when the process that started it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import Settings
from ..embedded import free_port

#: How long a gateway or worker may take to become ready (slow CI machines included).
START_TIMEOUT_SEC = 60.0
#: How long a process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_SEC = 20.0
LOG_TAIL_LINES = 60
#: Ready states of a worker host's liveness record.
READY_WORKER_STATES = ("IDLE", "RUNNING")


class PyocoSystemError(RuntimeError):
    """A gateway or worker did not start; the message ends with its log."""


def process_env(
    settings: Settings | None = None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a child: this process's without ``PYOCO_*``, then ``settings`` as
    ``PYOCO_*`` variables, then ``env``."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    if settings is not None:
        result.update(settings.to_env())
    result.update(env or {})
    return result


def executable(script: str, module: str) -> list[str]:
    """The command of an installed console script next to this Python, else ``python -m``."""
    found = shutil.which(script, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", module]


def _lifeline() -> Callable[[], None] | None:
    """A ``preexec_fn`` that stops the child if the starting process dies (Linux), else None.

    libc is loaded here, before the fork: the child only makes one foreign call.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except (OSError, AttributeError):
        return None
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG
    return lambda: libc.prctl(set_parent_death_signal, int(signal.SIGTERM))


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ("" when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a log text."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


class ServiceProcess:
    """One child process with its log file ``<log_dir>/<name>.log``."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = Path(log_dir) / f"{name}.log"
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=cwd or log_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_lifeline(),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`PyocoSystemError` with the log's end when the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise PyocoSystemError(
                f"{self.name} exited with code {code} while starting; its log:\n"
                f"{tail(self.log_path)}"
            )

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """Its JSON log lines."""
        return json_lines(self.log())

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; its exit code."""
        return self.process.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_SEC) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode


class GatewayProcess(ServiceProcess):
    """``pyoco-server up --nats-url … --host 127.0.0.1 --port <free>``.

    :ivar url: the gateway's base URL.
    """

    def __init__(
        self,
        log_dir: Path,
        *args: str,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        nats_url: str | None = None,
        port: int | None = None,
        name: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [*executable("pyoco-server", "pyoco_server.cli.server"), "up"]
        nats_url = nats_url or (settings.nats_url if settings is not None else None)
        if nats_url:
            command += ["--nats-url", nats_url]
        command += ["--host", "127.0.0.1", "--port", str(self.port), *args]
        environment = process_env(settings, env)
        super().__init__(name or f"gateway-{self.port}", command, environment, log_dir, cwd)

    def _not_ready(self, timeout: float) -> PyocoSystemError:
        return PyocoSystemError(
            f"{self.name} not ready after {timeout:.0f} s; its log:\n{tail(self.log_path)}"
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_SEC, interval: float = 0.05) -> None:
        """Block until ``GET /ready`` answers 200 (NATS connected, run index loaded), asking
        every ``interval`` seconds."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/ready").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._not_ready(timeout)
                time.sleep(interval)

    async def wait_ready_async(
        self, timeout: float = START_TIMEOUT_SEC, interval: float = 0.05
    ) -> None:
        """:meth:`wait_ready` for event loops."""
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as http:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/ready")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._not_ready(timeout)
                await asyncio.sleep(interval)


class WorkerProcess(ServiceProcess):
    """``pyoco-worker --worker-id <id> …`` (its log is ``<log_dir>/<name or worker_id>.log``)."""

    def __init__(
        self,
        log_dir: Path,
        *args: str,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        nats_url: str | None = None,
        worker_id: str | None = None,
        name: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:8]}"
        command = [*executable("pyoco-worker", "pyoco_server.cli.worker")]
        if nats_url:
            command += ["--nats-url", nats_url]
        command += ["--worker-id", self.worker_id, *args]
        environment = process_env(settings, env)
        super().__init__(name or self.worker_id, command, environment, log_dir, cwd)

    async def wait_ready_async(
        self, js: Any, workers_bucket: str, timeout: float = START_TIMEOUT_SEC
    ) -> None:
        """Until the worker's liveness record in ``workers_bucket`` says it pulls jobs."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            record = await worker_record(js, workers_bucket, self.worker_id)
            if record and record.get("state") in READY_WORKER_STATES:
                return
            if time.monotonic() > deadline:
                raise PyocoSystemError(
                    f"worker {self.worker_id} not ready after {timeout:.0f} s; its log:\n"
                    f"{tail(self.log_path)}"
                )
            await asyncio.sleep(0.05)


async def worker_record(js: Any, workers_bucket: str, worker_id: str) -> dict[str, Any] | None:
    """A worker's liveness record (``None`` while it has none)."""
    try:
        kv = await js.key_value(workers_bucket)
        entry = await kv.get(worker_id)
    except Exception:
        return None
    return json.loads(entry.value) if entry.value else None


def stop_all(processes: Iterable[ServiceProcess]) -> None:
    """Stop ``processes`` in reverse order (workers before the gateway they report to)."""
    for process in reversed(list(processes)):
        process.stop()
