"""Fixtures for gateway tests: the real app in-process (falcon.testing) on the test NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from falcon import testing
from gwtools import FakeTenancy, start_gateway

from pyoco_server.config import Settings


@pytest.fixture
def gateway_settings(settings: Settings) -> Settings:
    """The isolated test settings, with YAML callables allowed under ``tests.flows``."""
    return settings.with_overrides(yaml_allowed_callables=("tests.flows",))


@pytest.fixture
async def gateway(gateway_settings: Settings) -> AsyncIterator[testing.ASGIConductor]:
    """The gateway app (lifespan started) with the fake tenancy middleware."""
    async with start_gateway(gateway_settings, middleware=[FakeTenancy()]) as conductor:
        yield conductor
