"""Helpers for the dashboard's browser tests: a real gateway process, NATS writes from a
background event loop (so the tests stay synchronous like Selenium), and a headless Chromium.

Browser tests are skipped when Chromium, its driver or Selenium is missing — unless
``PYOCO_REQUIRE_BROWSER=1`` (CI), where a missing browser fails them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyoco_server.api_keys import ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings
from pyoco_server.nats_client import connect
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore
from pyoco_server.testing import GatewayProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--lang=en-US",
)
WIDE = (1280, 900)
#: How long a condition may take to show on the page (the page refreshes every 2 s).
WAIT_SEC = 20.0


class DashboardGateway(GatewayProcess):
    """A real gateway (``pyoco-server up``) for the dashboard tests, ready when built: a quiet
    log, the repository importable, its ``settings`` kept for the NATS writes."""

    def __init__(
        self, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        env = {"PYOCO_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
        super().__init__(log_dir, settings=settings, env=env, cwd=REPO_ROOT)
        self.settings = settings
        try:
            self.wait_ready(30)
        except BaseException:
            self.stop()
            raise

    def has(self, path: str, method: str = "get") -> bool:
        """True when the gateway's OpenAPI document has this operation."""
        document = httpx.get(self.url + "/openapi.json", timeout=5).json()
        return method in document["paths"].get(path, {})


def submit(base: str, flow_name: str, headers: dict[str, str] | None = None, **body: Any) -> str:
    """``POST /runs``; the new run id."""
    answer = httpx.post(
        base + "/runs", json={"flow_name": flow_name, **body}, headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["run_id"]


# --- NATS writes (what a worker or an administrator would do) ------------------------------


class NatsOps:
    """A NATS connection on a background event loop, for synchronous tests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self.call(connect(settings.nats_url, "dashboard-tests"))
        self.js = self.nc.jetstream(timeout=10.0)

    def call(self, coroutine: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def update_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Write new snapshot fields through :class:`RunStore` (a real KV compare-and-set)."""

        async def write() -> dict[str, Any]:
            kv = await self.js.key_value(self.settings.runs_kv_bucket)
            store = RunStore(kv, build_plugin_manager(plugins=[]), self.settings)
            snapshot, _ = await store.update(run_id, lambda s: {**s, **fields}, "test")
            return snapshot

        return self.call(write())

    def put_worker(self, record: dict[str, Any]) -> None:
        """Write a worker liveness record as a worker host does."""

        async def write() -> None:
            kv = await self.js.key_value(self.settings.workers_kv_bucket)
            await kv.put(record["worker_id"], json.dumps(record).encode())

        self.call(write())

    def dead_letter(self, tag: str, entry: dict[str, Any]) -> None:
        """Publish a dead-letter entry on ``pyoco.dlq.<tag>`` as a worker's disposition does."""
        subject = self.settings.dlq_subject(tag)
        self.call(self.js.publish(subject, json.dumps({"subject": subject, **entry}).encode()))

    def create_api_key(self, settings: Settings, pepper: str, tenant: str) -> str:
        """A new API key of ``tenant`` (what ``pyoco-server-admin api-key create`` does)."""

        async def create() -> str:
            kv = await open_auth_kv(self.js, settings)

            async def get_kv() -> Any:
                return kv

            api_key, _ = await ApiKeyStore(get_kv, pepper.encode()).create(tenant)
            return api_key

        return self.call(create())

    def close(self) -> None:
        self.call(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


# --- the browser ---------------------------------------------------------------------------


def _first(candidates: tuple[str, ...], name: str) -> str | None:
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def browser_unavailable() -> str | None:
    """Why no browser test can run here, or None when Chromium, its driver and Selenium are
    installed."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not _first(CHROMIUM_CANDIDATES, "chromium"):
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not _first(CHROMEDRIVER_CANDIDATES, "chromedriver"):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


def require_browser() -> None:
    """Skip the calling test without a browser; fail it when PYOCO_REQUIRE_BROWSER=1."""
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("PYOCO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PYOCO_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests need headless Chromium: {reason}")


def start_chromium() -> Any:
    """A headless Chromium driven through chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _first(CHROMIUM_CANDIDATES, "chromium")
    profile = tempfile.mkdtemp(prefix="pyoco-chromium-")
    for flag in (
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size={},{}".format(*WIDE),
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_first(CHROMEDRIVER_CANDIDATES, "chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    driver.profile_dir = profile
    return driver


def stop_chromium(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


#: Console messages that are not page errors: the browser logs every non-2xx answer.
EXPECTED_CONSOLE = ("Failed to load resource",)


class Page:
    """The dashboard of one gateway in the shared browser."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, route: str) -> None:
        """Load the page afresh at ``#<route>`` and wait until the app started."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/#{route}")
        self.wait(lambda: self.js("return document.body.dataset.ready") == "true", "app start")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_SEC) -> Any:
        """Poll ``condition`` until it is truthy; fail with ``what`` and the page's status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except Exception as exc:  # a stale element while the page re-renders
                value, error = None, exc
            else:
                error = None
            if value:
                return value
            if time.monotonic() > deadline:
                status = self.js(
                    "return [...document.querySelectorAll('[data-role=status],#notice')]"
                    ".map(e => e.textContent).join(' | ')"
                )
                raise AssertionError(f"timed out waiting for {what}; page says: {status!r}") from (
                    error
                )
            time.sleep(0.1)

    def text(self, selector: str) -> str | None:
        return self.js(
            "const e = document.querySelector(arguments[0]); return e && e.textContent", selector
        )

    def row_data(self, table_role: str, key: str, field: str) -> str | None:
        return self.js(
            'const t = document.querySelector(`[data-role="${arguments[0]}"]`);'
            "const row = t && [...t.tBodies[0].rows].find(r => r.dataset.key === arguments[1]);"
            "return row ? row.dataset[arguments[2]] : null",
            table_role,
            key,
            field,
        )

    def row_keys(self, table_role: str) -> list[str]:
        return self.js(
            'const t = document.querySelector(`[data-role="${arguments[0]}"]`);'
            "return t ? [...t.tBodies[0].rows].map(r => r.dataset.key) : []",
            table_role,
        )

    def cell_text(self, table_role: str, key: str, index: int) -> str | None:
        return self.js(
            'const t = document.querySelector(`[data-role="${arguments[0]}"]`);'
            "const row = t && [...t.tBodies[0].rows].find(r => r.dataset.key === arguments[1]);"
            "return row ? row.cells[arguments[2]].textContent : null",
            table_role,
            key,
            index,
        )

    def click(self, selector: str) -> None:
        self.driver.find_element("css selector", selector).click()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def page_errors(self) -> list[str]:
        """Console errors other than failed requests: script errors, CSP and Trusted Types
        violations."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
            and not any(expected in entry["message"] for expected in EXPECTED_CONSOLE)
        ]
