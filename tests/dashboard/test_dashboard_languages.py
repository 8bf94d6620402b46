"""The dashboard in Japanese and English (PYOCO_DASHBOARD_LANG / --dashboard-lang), and the
workers view's hide / include-hidden controls, in a real headless Chromium against real
gateways (``pyoco_server.testing``) and NATS.

The message catalogs are checked statically too: both languages have the same keys and
placeholders, and every key the markup and the scripts use exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from dashtools import Page

from pyoco_server.testing import PyocoSystem, start_system

UI = Path(__file__).resolve().parents[2] / "pyoco_server" / "gateway" / "ui"
PROBE = '<img src=x onerror="window.__pwned=1">'


# --- the catalogs ----------------------------------------------------------------------------


def catalog(name: str) -> dict[str, str]:
    """``key -> text`` of a messages-*.js file (a {one, other} entry as its joined forms)."""
    text = (UI / name).read_text(encoding="utf-8")
    entries = re.findall(r'^\s*"([^"]+)":\s*(\{.*?\}|"(?:[^"\\]|\\.)*"),?\s*$', text, re.M)
    return {key: value for key, value in entries}


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text)) - {"one", "other"}


def test_both_catalogs_have_the_same_keys_and_placeholders():
    en, ja = catalog("messages-en.js"), catalog("messages-ja.js")
    assert len(en) > 150
    assert set(en) == set(ja)
    for key in en:
        assert placeholders(en[key]) == placeholders(ja[key]), key
        assert ("{" in en[key][:1]) == ("{" in ja[key][:1]), f"{key}: plural in one language only"


def test_every_key_used_by_the_page_exists():
    en = catalog("messages-en.js")
    used = set(re.findall(r'data-i18n="([^"]+)"', (UI / "index.html").read_text()))
    used |= set(
        re.findall(
            r':([a-zA-Z.]+)"',
            " ".join(re.findall(r'data-i18n-attr="[^"]+"', (UI / "index.html").read_text())),
        )
    )
    for script in UI.glob("*.js"):
        source = script.read_text()
        used |= set(re.findall(r'\bt\("([^"]+)"', source))
        used |= set(re.findall(r'\bfact\("([^"]+)"', source))
        used |= set(re.findall(r'"((?:dlq|workers|runs|nav|run)\.[A-Za-z]+)"', source))
    missing = sorted(key for key in used if key not in en)
    assert not missing, missing


def test_markup_has_no_untranslated_text():
    html = (UI / "index.html").read_text()
    body = html[html.index("<body>") :]
    texts = re.findall(r"<(\w+)([^>]*)>([^<]*[A-Za-z][^<]*)<", body)
    untranslated = [
        text.strip()
        for tag, attributes, text in texts
        if text.strip()
        and "data-i18n=" not in attributes
        and tag not in ("code",)
        and text.strip() not in ("pyoco-server", "Page 1")
    ]
    assert not untranslated, untranslated


# --- the page in both languages --------------------------------------------------------------


@pytest.fixture(scope="module")
def systems(pyoco_nats_server, tmp_path_factory) -> Iterator[dict[str, PyocoSystem]]:
    """Gateways (no worker) with PYOCO_DASHBOARD_LANG ja, en and auto."""
    started: dict[str, PyocoSystem] = {}
    try:
        for lang in ("ja", "en", "auto"):
            started[lang] = start_system(
                pyoco_nats_server.url,
                tmp_path_factory.mktemp(f"dash-{lang}"),
                env={"PYOCO_DASHBOARD_LANG": lang},
                worker=False,
            )
        yield started
    finally:
        for system in started.values():
            system.stop()


def open_page(browser: Any, system: PyocoSystem) -> Page:
    browser.get_log("browser")  # drop what earlier tests left
    return Page(browser, system.url)


@pytest.fixture
def console_clean(browser: Any) -> Iterator[None]:
    """Fail the test on script, CSP or Trusted Types errors in the browser console."""
    browser.get_log("browser")
    yield
    page = Page(browser, "")
    errors = page.page_errors()
    assert not errors, f"errors in the browser console: {errors}"


def put_worker(system: PyocoSystem, worker_id: str, **record: Any) -> None:
    async def write() -> None:
        nc = await nats.connect(system.nats_url)
        try:
            kv = await nc.jetstream().key_value(system.env["PYOCO_WORKERS_KV_BUCKET"])
            document = {
                "worker_id": worker_id,
                "state": "IDLE",
                "tags": ["default"],
                "heartbeat_at": time.time(),
                "hostname": "node-1",
                "pid": 7,
                "concurrency": 2,
                **record,
            }
            await kv.put(worker_id, json.dumps(document).encode())
        finally:
            await nc.close()

    asyncio.run(write())


def submit(system: PyocoSystem, flow: str, **params: Any) -> str:
    answer = httpx.post(
        system.url + "/runs",
        json={"flow_name": flow, "tag": "nowhere", "params": params},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["run_id"]


WORDS = {
    "ja": {
        "runs": "ラン",
        "pending": "待機中",
        "no_match": "条件に一致するランはありません。",
        "workers": "ワーカー",
        "hide": "非表示にする",
        "unhide": "再表示する",
        "hidden_mark": "非表示",
        "idle": "アイドル",
        "not_found": "ランが見つかりません",
        "filter_status": "ステータス",
        "option_failed": "失敗",
        "plugins_intro": "このゲートウェイが起動時に読み込んだプラグインです。",
        "slots": " · 2 スロット",
        "fact_flow": "フロー",
        "no_task": "まだ開始したタスクはありません。",
        "queues": "キューとデッドレター",
        "no_dead_letters": "デッドレターはありません。",
        "charts": "アクティビティ",
        "chart_hour": "直近 1 時間",
        "registry": "プラグインレジストリ",
        "nav_registry": "レジストリ",
        "registry_history": "履歴",
    },
    "en": {
        "runs": "Runs",
        "pending": "PENDING",
        "no_match": "No runs match these filters.",
        "workers": "Workers",
        "hide": "Hide",
        "unhide": "Unhide",
        "hidden_mark": "hidden",
        "idle": "IDLE",
        "not_found": "not found",
        "filter_status": "Status",
        "option_failed": "FAILED",
        "plugins_intro": "Plugins this gateway loaded at start-up.",
        "slots": " · 2 slots",
        "fact_flow": "Flow",
        "no_task": "No task has started yet.",
        "queues": "Queues & dead letters",
        "no_dead_letters": "No dead letters.",
        "charts": "Activity",
        "chart_hour": "Last hour",
        "registry": "Plugin registry",
        "nav_registry": "Registry",
        "registry_history": "History",
    },
}


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_views_speak_the_configured_language(browser, systems, console_clean, lang):
    system = systems[lang]
    words = WORDS[lang]
    page = open_page(browser, system)
    flow = f"lang-{uuid.uuid4().hex[:6]}"
    run_id = submit(system, flow)

    page.open("/runs")
    assert page.js("return document.documentElement.lang") == lang
    page.wait(lambda: run_id in page.row_keys("runs"), "the run")
    assert page.text("#view-title") == words["runs"]
    assert page.text('[data-nav="workers"]') == words["workers"]
    assert page.cell_text("runs", run_id, 1) == words["pending"]
    assert page.text('label[for="f-status"]') == words["filter_status"]
    assert (
        page.js("return document.querySelector('#f-status option[value=FAILED]').textContent")
        == words["option_failed"]
    )
    # the PENDING count button keeps the status as its value, whatever the word shown
    assert (
        page.js("return document.querySelector('[data-status=PENDING] .badge').dataset.value")
        == "PENDING"
    )
    assert page.text(".charts-heading") == words["charts"]
    assert page.text('[data-window="hour"]') == words["chart_hour"]
    page.screenshot(f"runs-{lang}")

    page.open(f"/runs/{run_id}")
    page.wait(lambda: page.text('[data-role="timeline"]') == words["no_task"], "the run page")
    assert page.text('[data-role="facts"] dt') == words["fact_flow"]
    assert page.text('[data-role="status-badge"]') == words["pending"]

    page.open("/queues")
    page.wait(lambda: page.text('[data-role="dlq-status"]') == words["no_dead_letters"], "the DLQ")
    assert page.text("#view-title") == words["queues"]

    page.open(f"/runs?flow=nothing-{uuid.uuid4().hex[:6]}")
    page.wait(lambda: page.text('[data-role="status"]') == words["no_match"], "the empty state")

    page.open(f"/runs/{uuid.uuid4()}")
    page.wait(lambda: words["not_found"] in (page.text('[data-role="status"]') or ""), "404")
    assert "ERR-PYOCO-0005" in page.text('[data-role="status"]')

    page.open("/plugins")
    assert page.text(".intro").startswith(words["plugins_intro"])

    page.open("/registry")
    page.wait(lambda: page.text("#view-title") == words["registry"], "the registry view")
    assert page.text('[data-nav="registry"]') == words["nav_registry"]
    assert page.text("h2") == words["registry_history"]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_workers_can_be_hidden_and_shown_again(browser, systems, console_clean, lang):
    system = systems[lang]
    words = WORDS[lang]
    worker_id = f"w-{lang}-{uuid.uuid4().hex[:6]}"
    put_worker(system, worker_id)
    page = open_page(browser, system)
    page.open("/workers")
    page.wait(lambda: worker_id in page.row_keys("workers"), "the worker")
    assert page.cell_text("workers", worker_id, 1) == words["idle"]
    assert page.cell_text("workers", worker_id, 5) == "node-1:7" + words["slots"]
    button = f'tr[data-key="{worker_id}"] button[data-action="hide"]'
    assert page.text(button) == words["hide"]

    page.click(button)
    page.wait(lambda: worker_id not in page.row_keys("workers"), "the worker hidden")
    listed = httpx.get(system.url + "/workers", params={"include_hidden": "true"}).json()
    assert [w["hidden"] for w in listed if w["worker_id"] == worker_id] == [True]

    page.click('[data-role="include-hidden"]')
    page.wait(lambda: worker_id in page.row_keys("workers"), "hidden workers shown")
    assert words["hidden_mark"] in page.cell_text("workers", worker_id, 0)
    unhide = f'tr[data-key="{worker_id}"] button[data-action="unhide"]'
    assert page.text(unhide) == words["unhide"]
    page.click(unhide)
    page.wait(lambda: page.row_data("workers", worker_id, "hidden") == "false", "shown again")
    listed = httpx.get(system.url + "/workers").json()
    assert worker_id in [w["worker_id"] for w in listed]
    page.screenshot(f"workers-{lang}")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_server_values_stay_text_in_every_language(browser, systems, console_clean, lang):
    system = systems[lang]
    run_id = submit(system, PROBE, note=PROBE)
    put_worker(system, f"w-probe-{lang}", tags=[PROBE])
    page = open_page(browser, system)
    page.open(f"/runs?q={run_id}")
    page.wait(lambda: page.row_keys("runs") == [run_id], "the probe run")
    assert page.cell_text("runs", run_id, 2) == PROBE
    page.open(f"/runs/{run_id}")
    page.wait(lambda: json.dumps(PROBE) in (page.text('[data-role="params"]') or ""), "params")
    page.open("/workers")
    page.wait(lambda: page.cell_text("workers", f"w-probe-{lang}", 2) == PROBE, "the probe tag")
    assert page.js("return document.querySelectorAll('main img, main script').length") == 0
    assert page.js("return window.__pwned === undefined")


@pytest.mark.parametrize(("accept", "lang"), [("ja-JP,ja", "ja"), ("fr-FR,en-US", "en")])
def test_auto_follows_the_browsers_languages(browser, systems, console_clean, accept, lang):
    browser.execute_cdp_cmd(
        "Network.setUserAgentOverride",
        {
            "userAgent": browser.execute_script("return navigator.userAgent"),
            "acceptLanguage": accept,
        },
    )
    try:
        page = open_page(browser, systems["auto"])
        page.open("/runs")
        assert page.js("return document.documentElement.lang") == lang
        assert page.text("#view-title") == WORDS[lang]["runs"]
    finally:
        browser.execute_cdp_cmd(
            "Network.setUserAgentOverride",
            {
                "userAgent": browser.execute_script("return navigator.userAgent"),
                "acceptLanguage": "en-US",
            },
        )


def test_japanese_sign_in_and_hiding_a_worker_with_an_api_key(
    browser, pyoco_system_factory, console_clean
):
    """With authentication on, the key prompt speaks Japanese and the hide button sends the
    key (PATCH is a protected, mutating endpoint)."""
    pepper = "dashboard-lang-pepper-0123456789"
    system = pyoco_system_factory(
        worker=False,
        env={
            "PYOCO_DASHBOARD_LANG": "ja",
            "PYOCO_HTTP_AUTH_MODE": "api_key",
            "PYOCO_AUTH_PEPPER": pepper,
        },
    )
    admin_env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    admin_env.update(system.env, PYOCO_NATS_URL=system.nats_url)
    created = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.admin", "api-key", "create", "--tenant", "ops"],
        capture_output=True,
        text=True,
        env=admin_env,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    worker_id = f"w-auth-{uuid.uuid4().hex[:6]}"
    put_worker(system, worker_id)

    page = open_page(browser, system)
    page.open("/workers")
    page.wait(lambda: page.js("return document.getElementById('auth-dialog').open"), "prompt")
    assert page.text("#auth-title") == "API キーが必要です"
    page.driver.find_element("id", "auth-key").send_keys(key)
    page.click('#auth-form button[type="submit"]')
    page.wait(lambda: worker_id in page.row_keys("workers"), "the worker")
    page.click(f'tr[data-key="{worker_id}"] button[data-action="hide"]')
    page.wait(lambda: worker_id not in page.row_keys("workers"), "the worker hidden")
    listed = httpx.get(
        system.url + "/workers",
        params={"include_hidden": "true"},
        headers={"X-API-Key": key},
        timeout=10,
    ).json()
    assert [w["hidden"] for w in listed if w["worker_id"] == worker_id] == [True]
    page.js("sessionStorage.clear()")
