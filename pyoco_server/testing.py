"""pytest fixtures for plugin authors: a real pyoco-server system with your plugin loaded.

pyoco-server registers this module as a pytest plugin (entry point ``pytest11``), so once
pyoco-server is installed, a plugin's tests can simply ask for the fixtures::

    import pytest

    @pytest.fixture
    def pyoco_plugins():
        return ["my-plugin"]          # entry-point name, import path, file, or the object

    def test_my_flow_runs(pyoco_system):
        snapshot = pyoco_system.run("my-flow", {"n": 3})
        assert snapshot["status"] == "COMPLETED"

Everything is real: a ``nats-server`` with JetStream (one per test session), and for each
system a ``pyoco-server up --nats-url …`` gateway and a ``pyoco-worker --plugins …`` worker
on free loopback ports, with their own streams and buckets and a temporary directory for
their logs. They are stopped at the end of the test, also when it fails, and a failing test's
report shows the end of their logs. Nothing starts unless a test asks for a fixture.

Fixtures (all named ``pyoco_*``):

* ``pyoco_system`` — a running system with ``pyoco_plugins``, ``pyoco_env`` and
  ``pyoco_flow_resolver`` (override those three fixtures to configure it);
* ``pyoco_system_factory`` — ``start(plugins=..., disable=..., env=..., ...)`` for tests that
  need several systems or different settings;
* ``pyoco_nats_server`` — the session's nats-server (``.url``).

For a system shared by a whole module, use :func:`start_system` in your own fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

#: How long a gateway or worker may take to become ready (slow CI machines included).
START_TIMEOUT_SEC = 60.0
#: How long a process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_SEC = 20.0
LOG_TAIL_LINES = 60
#: Settings of test systems unless ``env`` says otherwise: a worker stopped at the end of a
#: test gives running flows a short grace period.
TEST_DEFAULTS = {"PYOCO_WORKER_GRACE_PERIOD_SEC": "5"}
_SYSTEMS = pytest.StashKey[list]()


class PyocoSystemError(RuntimeError):
    """A gateway or worker of a test system did not start; the message ends with its log."""


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


def _executable(script: str, module: str) -> list[str]:
    found = shutil.which(script, path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", module]


def _lifeline() -> Callable[[], None] | None:
    """A ``preexec_fn`` that stops the child if the test process dies (Linux), else None.

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


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def isolation_env(suffix: str | None = None) -> dict[str, str]:
    """``PYOCO_*`` names of streams, subjects and buckets unique to one system."""
    suffix = suffix or uuid.uuid4().hex[:10]
    return {
        "PYOCO_WORK_STREAM": f"WORK_{suffix}",
        "PYOCO_WORK_SUBJECT_PREFIX": f"t{suffix}.work",
        "PYOCO_DLQ_STREAM": f"DLQ_{suffix}",
        "PYOCO_DLQ_SUBJECT_PREFIX": f"t{suffix}.dlq",
        "PYOCO_RUNS_KV_BUCKET": f"runs_{suffix}",
        "PYOCO_WORKERS_KV_BUCKET": f"workers_{suffix}",
        "PYOCO_AUTH_KV_BUCKET": f"auth_{suffix}",
        "PYOCO_IDEMPOTENCY_KV_BUCKET": f"idem_{suffix}",
        "PYOCO_SPAWN_KV_BUCKET": f"spawn_{suffix}",
    }


class _Process:
    """One gateway or worker process with its log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log_file:
            self.popen = subprocess.Popen(
                command,
                cwd=log_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_lifeline(),
            )

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise PyocoSystemError(
                f"{self.name} exited with code {code} while starting; its log:\n"
                f"{_tail(self.log_path)}"
            )

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_SEC)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT_SEC)
        return self.popen.returncode


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
    ) -> None:
        from .client import PyocoHttpClient
        from .embedded import free_port

        self.nats_url = nats_url
        self.log_dir = log_dir
        self.plugins = plugins
        self.disable = disable
        self.env = env
        self.flow_resolver = flow_resolver
        self.tags = tags
        self.concurrency = concurrency
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_id = f"pytest-{uuid.uuid4().hex[:8]}" if worker else None
        self.client = PyocoHttpClient(self.url, timeout=10.0, retries=2, backoff=0.1)
        self._processes: list[_Process] = []

    def start(self) -> None:
        """Start the gateway and the worker (without waiting for them)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        env = {**base, **self.env}
        selection = ["--plugins", ",".join(self.plugins)]
        for name in self.disable:
            selection += ["-p", f"no:{name}"]
        gateway = _executable("pyoco-server", "pyoco_server.cli.server")
        gateway += ["up", "--nats-url", self.nats_url, "--host", "127.0.0.1"]
        gateway += ["--port", str(self.port), *selection]
        self._processes.append(_Process("gateway", gateway, env, self.log_dir))
        if self.worker_id is not None:
            worker = _executable("pyoco-worker", "pyoco_server.cli.worker")
            worker += ["--nats-url", self.nats_url, "--worker-id", self.worker_id]
            worker += ["--poll-timeout", "0.5", "--concurrency", str(self.concurrency)]
            worker += ["--exit-with-parent", *selection]
            if self.flow_resolver:
                worker += ["--flow-resolver", self.flow_resolver]
            if self.tags:
                worker += ["--tags", ",".join(self.tags)]
            self._processes.append(_Process("worker", worker, env, self.log_dir))

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
                        f"--- {p.name}.log ---\n{_tail(p.log_path)}" for p in self._processes
                    )
                    raise PyocoSystemError(f"system not ready after {timeout:.0f} s\n{logs}")
                time.sleep(0.1)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by name (``gateway``, ``worker``), e.g. to kill one in a fault test."""
        return {process.name: process.popen.pid for process in self._processes}

    def _worker_listed(self, http: Any) -> bool:
        if self.worker_id is None:
            return True
        workers = http.get("/workers").json()
        return any(w.get("worker_id") == self.worker_id and w.get("alive") for w in workers)

    def stop(self) -> None:
        """Stop the worker, then the gateway (SIGTERM, SIGKILL after a timeout)."""
        self.client.close()
        for process in reversed(self._processes):
            process.stop()

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
        from .model import is_terminal

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
        events = []
        for line in (self.log_dir / f"{which}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def log_tails(self) -> list[tuple[str, str]]:
        return [(p.name, _tail(p.log_path)) for p in self._processes]


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
    :return: a :class:`PyocoSystem`; stop it with ``stop()`` or use it as a context manager.
    """
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp("-pyoco"))
    directory.mkdir(parents=True, exist_ok=True)
    system = PyocoSystem(
        nats_url,
        directory,
        plugins=[plugin_spec(plugin) for plugin in plugins],
        disable=list(disable),
        env={**TEST_DEFAULTS, **isolation_env(), **(env or {})},
        flow_resolver=flow_resolver,
        tags=list(tags) if tags is not None else None,
        concurrency=concurrency,
        worker=worker,
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
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    command = _executable("pyoco-server", "pyoco_server.cli.server")
    result = subprocess.run(
        [*command, "plugins", "--json", *flags],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )
    if result.returncode != 0:
        raise PyocoSystemError(f"pyoco-server plugins failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pyoco_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real nats-server with JetStream for the whole session, started on first use."""
    from .embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path_factory.mktemp("pyoco-nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pyoco_plugins() -> list[Any]:
    """The plugins ``pyoco_system`` loads; override this fixture to name yours."""
    return []


@pytest.fixture
def pyoco_env() -> dict[str, str]:
    """Extra environment of ``pyoco_system``'s processes; override to configure."""
    return {}


@pytest.fixture
def pyoco_flow_resolver() -> str | None:
    """The ``--flow-resolver`` of ``pyoco_system``'s worker; override to set one."""
    return None


@pytest.fixture
def pyoco_system_factory(
    request: pytest.FixtureRequest,
    pyoco_nats_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PyocoSystem]]:
    """``start(**options)`` → a running :class:`PyocoSystem` (options of
    :func:`start_system`); every system started is stopped at the end of the test."""
    started: list[PyocoSystem] = request.node.stash.setdefault(_SYSTEMS, [])

    def start(**options: Any) -> PyocoSystem:
        log_dir = tmp_path_factory.mktemp("pyoco-system")
        system = start_system(pyoco_nats_server.url, log_dir, **options)
        started.append(system)
        return system

    try:
        yield start
    finally:
        for system in started:
            system.stop()


@pytest.fixture
def pyoco_system(
    pyoco_system_factory: Callable[..., PyocoSystem],
    pyoco_plugins: list[Any],
    pyoco_env: dict[str, str],
    pyoco_flow_resolver: str | None,
) -> PyocoSystem:
    """A running gateway + worker with ``pyoco_plugins`` loaded (see the module docstring)."""
    return pyoco_system_factory(
        plugins=pyoco_plugins, env=pyoco_env, flow_resolver=pyoco_flow_resolver
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the end of the systems' logs to the report of a failing test."""
    outcome = yield
    report = outcome.get_result()
    systems = item.stash.get(_SYSTEMS, None)
    if not systems or not report.failed:
        return
    for index, system in enumerate(systems):
        for name, tail in system.log_tails():
            report.sections.append((f"pyoco system {index}: {name} log (last lines)", tail))
