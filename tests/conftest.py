"""Shared fixtures: one real JetStream server per test session, isolated names per test.

The server is ``pyoco_nats_server`` of the :mod:`pyoco_server.testing` pytest plugin, so the
suite and tests that use ``pyoco_system`` share it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.nats_client import connect
from pyoco_server.testing import isolated_settings


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``XDG_STATE_HOME`` of this session (and of every process it starts): a gateway started
    without ``PYOCO_INDEX_DIR`` keeps its run index there, never in the real home."""
    path = tmp_path_factory.mktemp("state-home")
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(path)
    yield path
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def nats_server(pyoco_nats_server: EmbeddedNats) -> EmbeddedNats:
    """A real nats-server with JetStream on a free loopback port, stopped at the end."""
    return pyoco_nats_server


@pytest.fixture
def settings(nats_server: EmbeddedNats) -> Settings:
    return isolated_settings(nats_server.url)


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[object]:
    client = await connect(nats_server.url, "pytest")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
