"""A whole test system — gateway and worker on a shared nats-server — and the helpers plugin
authors use with it (:func:`start_system`, :class:`PyocoSystem`). Usable without pytest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .isolation import TEST_DLQ_MAX_BYTES, isolation_env
from .processes import (
    START_TIMEOUT_SEC,
    GatewayProcess,
    PyocoSystemError,
    ServiceProcess,
    WorkerProcess,
    executable,
    json_lines,
    process_env,
    stop_all,
    tail,
)

#: Settings of test systems unless ``env`` says otherwise: a worker stopped at the end of a
#: test gives running flows a short grace period; a small DLQ stream (see
#: :data:`~.isolation.TEST_DLQ_MAX_BYTES`).
TEST_DEFAULTS = {
    "PYOCO_WORKER_GRACE_PERIOD_SEC": "5",
    "PYOCO_DLQ_MAX_BYTES": str(TEST_DLQ_MAX_BYTES),
}


def plugin_spec(plugin: Any) -> str:
    """How ``--plugins`` names ``plugin``: a name or path as given, a module's file, or
    ``file.py:attr`` for an object defined at module level (e.g. a plugin instance)."""
    if isinstance(plugin, str):
        return plugin
    if isinstance(plugin, os.PathLike):
        return os.fspath(plugin)
    if isinstance(plugin, types.ModuleType):
        if getattr(plugin, "__file__", None):
            return str(Path(plugin.__file__).resolve())
        raise TypeError(f"module {plugin.__name__} has no file: pass its import path instead")
    module = sys.modules.get(getattr(plugin, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if module is not None and path:
        for attr, value in vars(module).items():
            if value is plugin and attr.isidentifier():
                return f"{Path(path).resolve()}:{attr}"
    raise TypeError(
        f"{plugin!r}: a plugin object must be defined at module level (the gateway and worker "
        "are separate processes that import it by file and attribute name)"
    )


def _run_async(coroutine: Any) -> Any:
    """Run ``coroutine`` to completion on a private event loop (safe inside async tests)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="pyoco-testing")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class PyocoSystem:
    """A running gateway (+ worker) on a shared nats-server; see :func:`start_system`.

    :ivar url: the gateway's base URL.
    :ivar client: a :class:`~pyoco_server.client.PyocoHttpClient` for it.
    :ivar env: the ``PYOCO_*`` environment both processes run with.
    :ivar worker_id: the worker's id (``None`` without a worker).
    :ivar log_dir: where ``gateway.log`` and ``worker.log`` are written.
    """

    def __init__(
        self,
        nats_url: str,
        log_dir: Path,
        plugins: list[str],
        disable: list[str],
        env: dict[str, str],
        flow_resolver: str | None,
        tags: list[str] | None,
        concurrency: int,
        worker: bool,
        worker_args: list[str] | None = None,
    ) -> None:
        from ..client import PyocoHttpClient
        from ..embedded import free_port

        self.nats_url = nats_url
        self.log_dir = log_dir
        self.plugins = plugins
        self.disable = disable
        self.env = env
        self.flow_resolver = flow_resolver
        self.tags = tags
        self.concurrency = concurrency
        self.worker_args = list(worker_args or [])
        self.worker_id = f"pytest-{uuid.uuid4().hex[:8]}" if worker else None
        self._processes: list[ServiceProcess] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = PyocoHttpClient(self.url, timeout=10.0, retries=2, backoff=0.1)

    def _selection(self) -> list[str]:
        selection = ["--plugins", ",".join(self.plugins)]
        for name in self.disable:
            selection += ["-p", f"no:{name}"]
        return selection

    def start(self) -> None:
        """Start the gateway and the worker (without waiting for them)."""
        gateway = GatewayProcess(
            self.log_dir,
            *self._selection(),
            env=self.env,
            nats_url=self.nats_url,
            port=self.port,
            name="gateway",
        )
        self._processes.append(gateway)
        if self.worker_id is None:
            return
        args = ["--poll-timeout", "0.5", "--concurrency", str(self.concurrency)]
        args += ["--exit-with-parent", *self._selection()]
        if self.flow_resolver:
            args += ["--flow-resolver", self.flow_resolver]
        if self.tags:
            args += ["--tags", ",".join(self.tags)]
        args += self.worker_args
        worker = WorkerProcess(
            self.log_dir,
            *args,
            env=self.env,
            nats_url=self.nats_url,
            worker_id=self.worker_id,
            name="worker",
        )
        self._processes.append(worker)

    # -- life cycle --------------------------------------------------------------------------

    def wait_ready(self, timeout: float = START_TIMEOUT_SEC) -> None:
        """Block until the gateway answers ``/ready`` and the worker is listed alive."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while True:
                for process in self._processes:
                    process.check_alive()
                try:
                    if http.get("/ready").status_code == 200 and self._worker_listed(http):
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    logs = "\n".join(
                        f"--- {p.name}.log ---\n{tail(p.log_path)}" for p in self._processes
                    )
                    raise PyocoSystemError(f"system not ready after {timeout:.0f} s\n{logs}")
                time.sleep(0.1)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by name (``gateway``, ``worker``), e.g. to kill one in a fault test."""
        return {process.name: process.pid for process in self._processes}

    def running(self, name: str) -> bool:
        """Whether the process ``name`` (``gateway``, ``worker``) has not exited, e.g. after a
        crash a fault test provoked."""
        return any(p.name == name and p.running() for p in self._processes)

    def _worker_listed(self, http: Any) -> bool:
        if self.worker_id is None:
            return True
        response = http.get("/workers", params={"scope": "all", "include_hidden": "true"})
        workers = response.json() if response.status_code == 200 else None
        if not isinstance(workers, list):  # e.g. a 503 error body while NATS settles
            return False
        return any(w.get("worker_id") == self.worker_id and w.get("alive") for w in workers)

    def stop(self) -> None:
        """Stop the worker, then the gateway (SIGTERM, SIGKILL after a timeout)."""
        self.client.close()
        stop_all(self._processes)

    def __enter__(self) -> PyocoSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- runs ------------------------------------------------------------------------------

    def submit(
        self, flow_name: str, params: Mapping[str, Any] | None = None, *, tag: str | None = None
    ) -> str:
        """Submit a run of ``flow_name`` (``POST /runs``); returns its run id."""
        return self.client.submit_run(flow_name, dict(params or {}), tag=tag)["run_id"]

    def submit_yaml(
        self, workflow: str | bytes | Path, flow_name: str, *, tag: str | None = None
    ) -> str:
        """Submit a ``flow.yaml`` (``POST /runs/yaml``); returns its run id.

        A rejection raises :class:`~pyoco_server.client.PyocoHttpError` (``.status``,
        ``.body["reason"]``).
        """
        return self.client.submit_run_yaml(workflow, flow_name, tag=tag)["run_id"]

    def get(self, run_id: str) -> dict[str, Any]:
        """The run's snapshot with its task records."""
        return self.client.get_run(run_id, include=["records"])

    def wait(
        self, run_id: str, timeout: float = 60.0, statuses: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Poll the run until it is terminal (or has one of ``statuses``); its snapshot."""
        from ..model import is_terminal

        wanted = set(statuses) if statuses is not None else None
        if wanted is None:
            return self.wait_until(run_id, lambda s: is_terminal(s.get("status")), timeout)
        return self.wait_until(run_id, lambda s: s.get("status") in wanted, timeout)

    def wait_until(
        self, run_id: str, condition: Callable[[dict[str, Any]], Any], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll the run's snapshot until ``condition(snapshot)`` is true; that snapshot."""
        deadline = time.monotonic() + timeout
        snapshot: dict[str, Any] = {}
        while time.monotonic() < deadline:
            snapshot = self.get(run_id)
            if condition(snapshot):
                return snapshot
            time.sleep(0.1)
        raise AssertionError(
            f"run {run_id}: condition not met within {timeout:.0f} s; last snapshot: "
            f"{json.dumps(snapshot)[:2000]}"
        )

    def run(
        self, flow_name: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Submit ``flow_name`` and wait for its terminal snapshot."""
        return self.wait(self.submit(flow_name, params), timeout)

    # -- dead letters and logs ---------------------------------------------------------------

    def dead_letters(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Every dead letter of this system (oldest first), each with its stream ``seq``."""
        stream = self.env["PYOCO_DLQ_STREAM"]

        async def read() -> list[dict[str, Any]]:
            import nats
            from nats.js.errors import NotFoundError

            connection = await nats.connect(self.nats_url, connect_timeout=5)
            try:
                js = connection.jetstream()
                state = (await js.stream_info(stream)).state
                entries = []
                for seq in range(state.first_seq, state.last_seq + 1):
                    if seq <= 0:
                        continue
                    try:
                        message = await js.get_msg(stream, seq)
                    except NotFoundError:
                        continue
                    entries.append({**json.loads(message.data), "seq": seq})
                return entries
            finally:
                await connection.close()

        entries = _run_async(read())
        return [e for e in entries if run_id is None or e.get("run_id") == run_id]

    def wait_dead_letter(self, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The newest dead letter of ``run_id`` (waits for it: it follows the snapshot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.dead_letters(run_id)
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no dead letter for run {run_id} within {timeout:.0f} s")

    def gateway_log(self) -> str:
        return (self.log_dir / "gateway.log").read_text(errors="replace")

    def worker_log(self) -> str:
        return (self.log_dir / "worker.log").read_text(errors="replace")

    def log_events(self, which: str = "worker") -> list[dict[str, Any]]:
        """The JSON log lines of ``gateway`` or ``worker`` (its execution processes included)."""
        return json_lines((self.log_dir / f"{which}.log").read_text(errors="replace"))

    def log_tails(self) -> list[tuple[str, str]]:
        return [(p.name, tail(p.log_path)) for p in self._processes]


def start_system(
    nats_url: str,
    log_dir: str | os.PathLike[str] | None = None,
    *,
    plugins: Iterable[Any] = (),
    disable: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    flow_resolver: str | None = None,
    tags: Iterable[str] | None = None,
    concurrency: int = 1,
    worker: bool = True,
    worker_args: Iterable[str] = (),
) -> PyocoSystem:
    """Start a gateway (and a worker) on ``nats_url`` and wait until both are ready.

    :param plugins: what ``--plugins`` loads on both, besides the built-ins: entry-point
        names, ``package.module`` import paths, ``path/file.py`` files, module objects or
        plugin objects defined at module level. Other installed plugins are not loaded.
    :param disable: names passed as ``-p no:NAME`` (built-ins included).
    :param env: extra environment for both processes (``PYOCO_*`` settings, your plugin's
        variables); wins over the generated stream and bucket names.
    :param flow_resolver: the worker's ``--flow-resolver``.
    :param worker: ``False`` for a gateway alone.
    :param worker_args: more ``pyoco-worker`` flags, after the others (a repeated flag such
        as ``--plugins`` wins for the worker alone).
    :return: a :class:`PyocoSystem`; stop it with ``stop()`` or use it as a context manager.
    """
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp("-pyoco"))
    directory.mkdir(parents=True, exist_ok=True)
    system = PyocoSystem(
        nats_url,
        directory,
        plugins=[plugin_spec(plugin) for plugin in plugins],
        disable=list(disable),
        env={
            **TEST_DEFAULTS,
            **isolation_env(),
            # the gateway keeps its run index with the logs (never in the user's home)
            "PYOCO_INDEX_DIR": str(directory / "run-index"),
            **(env or {}),
        },
        flow_resolver=flow_resolver,
        tags=list(tags) if tags is not None else None,
        concurrency=concurrency,
        worker=worker,
        worker_args=list(worker_args),
    )
    try:
        system.start()
        system.wait_ready()
    except BaseException:
        system.stop()
        raise
    return system


def plugin_listing(*flags: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``pyoco-server plugins --json [flags]``: what would load (name, distribution, version)."""
    command = executable("pyoco-server", "pyoco_server.cli.server")
    result = subprocess.run(
        [*command, "plugins", "--json", *flags],
        capture_output=True,
        text=True,
        env=process_env(env=env),
        timeout=120,
    )
    if result.returncode != 0:
        raise PyocoSystemError(f"pyoco-server plugins failed: {result.stderr.strip()}")
    return json.loads(result.stdout)
