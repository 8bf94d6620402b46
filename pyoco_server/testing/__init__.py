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

The package has four parts: :mod:`.processes` (gateway and worker processes: start, wait
until ready, stop), :mod:`.isolation` (unique stream and bucket names) and :mod:`.system`
(:class:`PyocoSystem`) work without pytest, for scripts and benchmarks; :mod:`.pytest_plugin`
holds the fixtures, which this module re-exports for the ``pytest11`` entry point.
"""

from __future__ import annotations

import importlib.util

from .isolation import (
    ISOLATED_FIELDS,
    TEST_DLQ_MAX_BYTES,
    isolated_settings,
    isolation_env,
    unique_names,
)
from .processes import (
    START_TIMEOUT_SEC,
    STOP_TIMEOUT_SEC,
    GatewayProcess,
    PyocoSystemError,
    ServiceProcess,
    WorkerProcess,
    process_env,
)
from .system import TEST_DEFAULTS, PyocoSystem, plugin_listing, plugin_spec, start_system

__all__ = [
    "ISOLATED_FIELDS",
    "START_TIMEOUT_SEC",
    "STOP_TIMEOUT_SEC",
    "TEST_DEFAULTS",
    "TEST_DLQ_MAX_BYTES",
    "GatewayProcess",
    "PyocoSystem",
    "PyocoSystemError",
    "ServiceProcess",
    "WorkerProcess",
    "isolated_settings",
    "isolation_env",
    "plugin_listing",
    "plugin_spec",
    "process_env",
    "start_system",
    "unique_names",
]

# The fixtures, for the pytest11 entry point (``pyoco_server.testing``) and for plugin authors
# who import them by name; only where pytest is installed.
if importlib.util.find_spec("pytest") is not None:
    from .pytest_plugin import (  # noqa: F401
        pyoco_env,
        pyoco_flow_resolver,
        pyoco_nats_server,
        pyoco_plugins,
        pyoco_system,
        pyoco_system_factory,
        pytest_runtest_makereport,
    )
