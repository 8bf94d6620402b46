"""Fixtures of the plugin registry tests: built wheels and signing keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from regwheels import PluginWheels, build_plugin_wheels

from pyoco_server.plugin_registry.signing import generate_key_pair, write_private_key


@pytest.fixture(scope="session")
def plugin_wheels(tmp_path_factory: pytest.TempPathFactory) -> PluginWheels:
    cache = os.environ.get("PYOCO_TEST_WHEEL_CACHE")
    out = Path(cache) if cache else tmp_path_factory.mktemp("plugin-wheels")
    return build_plugin_wheels(out)


@dataclass(frozen=True)
class SigningKey:
    private_file: Path
    public: str


def _key(directory: Path, name: str) -> SigningKey:
    pem, public = generate_key_pair()
    path = directory / f"{name}.pem"
    write_private_key(path, pem)
    return SigningKey(path, public)


@pytest.fixture(scope="session")
def trusted_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return _key(tmp_path_factory.mktemp("keys"), "trusted")


@pytest.fixture(scope="session")
def untrusted_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return _key(tmp_path_factory.mktemp("keys"), "untrusted")
