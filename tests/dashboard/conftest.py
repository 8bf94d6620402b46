"""Fixtures of the dashboard tests: one browser and one gateway per module, NATS writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashtools import (
    WIDE,
    DashboardGateway,
    NatsOps,
    Page,
    require_browser,
    start_chromium,
    stop_chromium,
)

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.testing import isolated_settings


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
    return isolated_settings(nats_server.url)


@pytest.fixture(scope="module")
def gateway(dash_settings: Settings, tmp_path_factory) -> Iterator[DashboardGateway]:
    """A real gateway (authentication off) on its own streams and buckets."""
    process = DashboardGateway(dash_settings, tmp_path_factory.mktemp("dashboard-gateway"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def ops(dash_settings: Settings, gateway: DashboardGateway) -> Iterator[NatsOps]:
    """Writes to the gateway's buckets, as a worker or an administrator would."""
    helper = NatsOps(dash_settings)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def page(browser: Any, gateway: DashboardGateway) -> Iterator[Page]:
    """The dashboard of :func:`gateway`; fails the test on script, CSP or Trusted Types
    errors in the browser console."""
    browser.set_window_size(*WIDE)
    browser.get_log("browser")  # drop what earlier tests left
    dashboard = Page(browser, gateway.url)
    yield dashboard
    errors = dashboard.page_errors()
    assert not errors, f"errors in the browser console: {errors}"
