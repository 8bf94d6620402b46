"""The charts above the runs list in a real headless Chromium: empty, with finished runs and
queued jobs, per window, and with authentication on (a tenant sees its own runs only)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dashtools import NatsOps, Page, require_browser, start_chromium, stop_chromium

from pyoco_server.config import Settings
from pyoco_server.gateway.activity.resource import FRESH_SAMPLE_SEC
from pyoco_server.testing import PyocoSystem, start_system

PEPPER = "charts-test-pepper-0123456789"
FINISHED = '[data-chart="Runs finished per minute, by status"]'
DEPTH = '[data-chart="Queue depth per tag"]'


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_browser()
    driver = start_chromium()
    try:
        yield driver
    finally:
        stop_chromium(driver)


def gateway(nats_url: str, tmp_path_factory, **env: str) -> tuple[PyocoSystem, NatsOps]:
    system = start_system(nats_url, tmp_path_factory.mktemp("charts"), worker=False, env=env)
    return system, NatsOps(settings_of(system))


def settings_of(system: PyocoSystem) -> Settings:
    return Settings.from_env({**system.env, "PYOCO_NATS_URL": system.nats_url})


def open_charts(driver, system: PyocoSystem) -> Page:
    driver.get_log("browser")
    page = Page(driver, system.url)
    page.open("/runs")
    return page


def chart_text(page: Page, chart: str) -> str:
    return page.text(chart) or ""


def legend(page: Page, chart: str) -> list[str]:
    return page.js(
        "return [...document.querySelectorAll(arguments[0] + ' .chart-legend li')]"
        ".map((li) => li.textContent)",
        chart,
    )


def series(page: Page, chart: str) -> list[str]:
    return page.js(
        "return [...document.querySelectorAll(arguments[0] + ' .series')]"
        ".map((p) => p.dataset.series)",
        chart,
    )


def reload_charts(page: Page, window: str) -> None:
    other = "day" if window == "hour" else "hour"
    page.click(f'[data-window="{other}"]')
    page.wait(
        lambda: page.js("return document.querySelector('.charts').dataset.loaded") == other, other
    )
    page.click(f'[data-window="{window}"]')
    page.wait(
        lambda: page.js("return document.querySelector('.charts').dataset.loaded") == window, window
    )


def test_charts_show_nothing_then_finished_runs_and_queue_depth(
    browser, nats_server, tmp_path_factory
):
    system, ops = gateway(nats_server.url, tmp_path_factory)
    try:
        page = open_charts(browser, system)
        page.wait(lambda: "No runs finished in this window." in chart_text(page, FINISHED), "empty")
        assert "No queue samples in this window yet." in chart_text(page, DEPTH)
        assert page.js("return document.querySelectorAll('.charts svg').length") == 0
        # the charts sit above the runs list
        assert page.js(
            "return document.querySelector('.charts').compareDocumentPosition("
            "document.querySelector('[data-role=\"runs\"]')) & Node.DOCUMENT_POSITION_FOLLOWING"
        )

        done = [system.submit("etl") for _ in range(2)]
        failed = system.submit("etl")
        for _ in range(3):
            system.submit("etl", tag="gpu")
        for run_id in done:
            ops.update_run(run_id, status="COMPLETED", end_time=time.time())
        ops.update_run(failed, status="FAILED", error="<b>boom</b>", end_time=time.time())
        time.sleep(FRESH_SAMPLE_SEC + 0.2)  # so the next load samples the queues again
        reload_charts(page, "hour")
        page.wait(lambda: "COMPLETED" in series(page, FINISHED), "the COMPLETED line")
        assert sorted(series(page, FINISHED)) == ["COMPLETED", "FAILED"]
        assert "COMPLETED · 2 in total" in legend(page, FINISHED)
        assert "FAILED · 1 in total" in legend(page, FINISHED)
        assert "gpu · now 3" in legend(page, DEPTH) and "gpu" in series(page, DEPTH)
        assert (
            page.js(
                "return document.querySelector(arguments[0] + ' svg').getAttribute('role')",
                FINISHED,
            )
            == "img"
        )

        page.click('[data-window="day"]')
        page.wait(
            lambda: page.js("return document.querySelector('.charts').dataset.loaded") == "day",
            "day",
        )
        pressed = "return document.querySelector('[data-window=\"day\"]').ariaPressed"
        assert page.js(pressed) == "true"
        assert "24 h ago" in chart_text(page, FINISHED)
        assert "COMPLETED · 2 in total" in legend(page, FINISHED)
        page.screenshot("runs-charts")
        assert not page.page_errors()
    finally:
        ops.close()
        system.stop()


def test_with_auth_on_a_tenant_charts_its_own_runs(browser, nats_server, tmp_path_factory):
    system, ops = gateway(
        nats_server.url,
        tmp_path_factory,
        PYOCO_HTTP_AUTH_MODE="api_key",
        PYOCO_AUTH_PEPPER=PEPPER,
    )
    try:
        settings = settings_of(system)
        mine = ops.create_api_key(settings, PEPPER, "ops-team")
        theirs = ops.create_api_key(settings, PEPPER, "other-team")
        import httpx

        def submit(key: str) -> str:
            answer = httpx.post(
                system.url + "/runs", json={"flow_name": "etl"}, headers={"X-API-Key": key}
            )
            answer.raise_for_status()
            return answer.json()["run_id"]

        for run_id in [submit(mine), submit(mine), submit(theirs)]:
            ops.update_run(run_id, status="COMPLETED", end_time=time.time())
        page = open_charts(browser, system)
        page.wait(lambda: page.js("return document.getElementById('auth-dialog').open"), "prompt")
        page.driver.find_element("id", "auth-key").send_keys(mine)
        page.click('#auth-form button[type="submit"]')
        page.wait(lambda: "COMPLETED" in series(page, FINISHED), "the tenant's finished runs")
        assert "COMPLETED · 2 in total" in legend(page, FINISHED)
        assert not page.page_errors()
    finally:
        ops.close()
        system.stop()
