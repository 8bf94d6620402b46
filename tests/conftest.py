"""Shared fixtures: one real JetStream server per test session, isolated names per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from isolation import isolated_settings

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.nats_client import connect


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free loopback port, stopped by PID at the end."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-store"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
