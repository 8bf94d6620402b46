"""Fixtures of the dashboard tests: one browser and one gateway per module, NATS writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashtools import (
    WIDE,
    GatewayProcess,
    NatsOps,
    Page,
    isolated,
    require_browser,
    start_chromium,
    stop_chromium,
)

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for the module (skipped or failed when none is installed)."""
    require_browser()
    driver = start_chromium()
    try:
        yield driver
    finally:
        stop_chromium(driver)


@pytest.fixture(scope="module")
def dash_settings(nats_server: EmbeddedNats) -> Settings:
    return isolated(nats_server.url)


@pytest.fixture(scope="module")
def gateway(dash_settings: Settings) -> Iterator[GatewayProcess]:
    """A real gateway (authentication off) on its own streams and buckets."""
    process = GatewayProcess(dash_settings)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def ops(dash_settings: Settings, gateway: GatewayProcess) -> Iterator[NatsOps]:
    """Writes to the gateway's buckets, as a worker or an administrator would."""
    helper = NatsOps(dash_settings)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def page(browser: Any, gateway: GatewayProcess) -> Iterator[Page]:
    """The dashboard of :func:`gateway`; fails the test on script, CSP or Trusted Types
    errors in the browser console."""
    browser.set_window_size(*WIDE)
    browser.get_log("browser")  # drop what earlier tests left
    dashboard = Page(browser, gateway.base)
    yield dashboard
    errors = dashboard.page_errors()
    assert not errors, f"errors in the browser console: {errors}"
