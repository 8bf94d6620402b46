"""The pytest plugin of :mod:`pyoco_server.testing`: the ``pyoco_*`` fixtures and the log
tails on a failing test's report. The processes themselves are started by
:mod:`.system` and :mod:`.processes`, which do not need pytest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..embedded import EmbeddedNats
from .system import PyocoSystem, start_system

_SYSTEMS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def pyoco_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real nats-server with JetStream for the whole session, started on first use."""
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
