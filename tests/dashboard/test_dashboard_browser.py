"""The dashboard in a real headless Chromium against a real gateway and NATS.

Runs move through their states by real KV writes (``RunStore.update``, what a worker does);
the page must follow without being reloaded. Screenshots of the main views are saved under
``test-artifacts/dashboard/``.

Tests for endpoints that other issues add (cancel, watch, DLQ) are at the end; each skips
while the gateway's OpenAPI document lacks its endpoint, so they start running by themselves
when the endpoint lands.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import httpx
import pytest
from dashtools import DashboardGateway, NatsOps, Page, submit

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.jobs import build_job
from pyoco_server.testing import isolated_settings

PROBE = '<img src=x onerror="window.__pwned=1">'


def keep_document_marker(page: Page) -> None:
    """Mark the loaded document; :func:`same_document` is False after any reload."""
    page.js("window.__sameDocument = 'yes'")


def same_document(page: Page) -> bool:
    return page.js("return window.__sameDocument") == "yes"


def count_of(page: Page, status: str) -> int | None:
    text = page.text(f'[data-role="count-{status}"]')
    return int(text) if text and text.isdigit() else None


# --- runs ----------------------------------------------------------------------------------


def test_runs_table_follows_a_run_from_pending_to_completed_without_reload(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    run_id = submit(gateway.url, "nightly-etl", tag="default")
    page.open("/runs")
    page.wait(lambda: page.row_data("runs", run_id, "status") == "PENDING", "the PENDING row")
    page.wait(lambda: count_of(page, "COMPLETED") is not None, "the status counts")
    completed_before = count_of(page, "COMPLETED")
    keep_document_marker(page)

    started = time.time()
    ops.update_run(run_id, status="RUNNING", worker_id="worker-a", start_time=started)
    page.wait(lambda: page.row_data("runs", run_id, "status") == "RUNNING", "RUNNING")
    assert page.cell_text("runs", run_id, 4) == "worker-a"

    ops.update_run(run_id, status="COMPLETED", end_time=started + 2.5)
    page.wait(lambda: page.row_data("runs", run_id, "status") == "COMPLETED", "COMPLETED")
    page.wait(lambda: count_of(page, "COMPLETED") == completed_before + 1, "the count to grow")
    assert page.cell_text("runs", run_id, 6) == "2.5 s", "duration from start to end"
    assert same_document(page), "the page was reloaded instead of updating live"
    page.screenshot("runs")


def test_filters_search_and_server_side_paging(page: Page, gateway: DashboardGateway):
    flow = f"paging-{uuid.uuid4().hex[:6]}"
    runs = [submit(gateway.url, flow) for _ in range(5)]  # runs[4] is the newest
    submit(gateway.url, f"other-{flow}")
    page.open(f"/runs?flow={flow}&limit=2")
    page.wait(lambda: page.row_keys("runs") == [runs[4], runs[3]], "page 1 (newest two)")
    assert page.js("return document.querySelector('[data-role=newer]').disabled")

    page.click('[data-role="older"]')
    page.wait(lambda: page.row_keys("runs") == [runs[2], runs[1]], "page 2")
    assert page.text('[data-role="page"]') == "Page 2"
    page.click('[data-role="older"]')
    page.wait(lambda: page.row_keys("runs") == [runs[0]], "page 3, the last")
    page.wait(lambda: page.js("return document.querySelector('[data-role=older]').disabled"), "")
    page.click('[data-role="newer"]')
    page.wait(lambda: page.row_keys("runs") == [runs[2], runs[1]], "back to page 2")

    search = page.driver.find_element("id", "f-q")
    search.send_keys(runs[3][9:18])  # a fragment from the middle of the id
    page.click('[data-role="filters"] button[type="submit"]')
    page.wait(lambda: page.row_keys("runs") == [runs[3]], "the searched run only")
    assert "q=" in page.driver.current_url and f"flow={flow}" in page.driver.current_url

    page.open(f"/runs?flow=no-such-{flow}")
    page.wait(lambda: page.text('[data-role="status"]') == "No runs match these filters.", "")


def test_status_count_buttons_filter_the_table(page: Page, gateway: DashboardGateway):
    run_id = submit(gateway.url, "count-filter")
    page.open("/runs")
    page.wait(lambda: run_id in page.row_keys("runs"), "the run")
    page.click('button.count[data-status="FAILED"]')
    page.wait(lambda: "status=FAILED" in page.driver.current_url, "the status filter")
    page.wait(lambda: run_id not in page.row_keys("runs"), "the PENDING run to be filtered out")
    assert page.js("return document.getElementById('f-status').value") == "FAILED"


# --- run detail ----------------------------------------------------------------------------


def records(now: float) -> dict:
    return {
        "extract": {
            "state": "SUCCEEDED",
            "started_at": now - 6,
            "ended_at": now - 4,
            "duration_ms": 2000.0,
            "output": {"rows": 1200},
        },
        "transform": {"state": "RUNNING", "started_at": now - 4, "ended_at": None},
        "load": {"state": "PENDING"},
    }


def test_run_detail_shows_params_task_states_and_timeline_live(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    run_id = submit(gateway.url, "nightly-etl", params={"day": "2026-11-30", "limit": 3})
    now = time.time()
    ops.update_run(
        run_id,
        status="RUNNING",
        worker_id="worker-b",
        start_time=now - 6,
        tasks={"extract": "SUCCEEDED", "transform": "RUNNING", "load": "PENDING"},
        task_records=records(now),
    )
    page.open(f"/runs/{run_id}")
    page.wait(lambda: page.js("return document.querySelector('.view').dataset.status"), "")
    assert page.js("return document.querySelector('.view').dataset.status") == "RUNNING"
    assert '"day": "2026-11-30"' in page.text('[data-role="params"]')
    states = {key: page.row_data("tasks", key, "state") for key in page.row_keys("tasks")}
    assert states == {"extract": "SUCCEEDED", "transform": "RUNNING", "load": "PENDING"}
    assert page.row_keys("tasks") == ["extract", "transform", "load"], "ordered by start"
    assert '"rows": 1200' in page.cell_text("tasks", "extract", 4)
    bars = page.js(
        "return [...document.querySelectorAll('.tl-bar')].map(b => b.getBoundingClientRect().width)"
    )
    assert len(bars) == 2 and all(width > 1 for width in bars), bars
    assert "not started" in page.text('.tl-row[data-task="load"]')
    assert page.js("return !document.querySelector('[data-role=cancel]').hidden")
    expected_live = "watch" if gateway.has("/runs/{run_id}/watch") else "poll"
    assert page.js("return document.querySelector('.view').dataset.live") == expected_live
    keep_document_marker(page)
    page.screenshot("run-detail")

    done = time.time()
    finished = records(now)
    finished["transform"].update(state="SUCCEEDED", ended_at=done - 1, duration_ms=3000.0)
    finished["load"].update(state="SUCCEEDED", started_at=done - 1, ended_at=done)
    ops.update_run(
        run_id,
        status="COMPLETED",
        end_time=done,
        tasks={"extract": "SUCCEEDED", "transform": "SUCCEEDED", "load": "SUCCEEDED"},
        task_records=finished,
    )
    page.wait(
        lambda: page.js("return document.querySelector('.view').dataset.live") == "done",
        "the view to end at the terminal snapshot",
    )
    assert page.js("return document.querySelector('.view').dataset.status") == "COMPLETED"
    assert page.js("return document.querySelectorAll('.tl-bar.state-succeeded').length") == 3
    assert page.js("return document.querySelector('[data-role=cancel]').hidden")
    assert same_document(page)


def test_unknown_run_says_not_found(page: Page):
    page.open(f"/runs/{uuid.uuid4()}")
    page.wait(lambda: "not found" in (page.text('[data-role="status"]') or ""), "not found")
    assert "ERR-PYOCO-0005" in page.text('[data-role="status"]')


# --- workers, queues, plugins --------------------------------------------------------------


def test_workers_view_shows_every_state(page: Page, gateway: DashboardGateway, ops: NatsOps):
    now = time.time()
    run_id = submit(gateway.url, "busy-flow")
    workers = {
        "w-busy": {"state": "RUNNING", "current_run_id": run_id, "tags": ["gpu", "default"]},
        "w-idle": {"state": "IDLE", "current_run_id": None, "tags": ["default"]},
        "w-gone": {"state": "RUNNING", "heartbeat_at": now - 600, "tags": ["cpu"]},
        "w-stopped": {"state": "STOPPED", "tags": ["default"]},
    }
    for worker_id, record in workers.items():
        ops.put_worker(
            {
                "worker_id": worker_id,
                "heartbeat_at": now,
                "hostname": "node-1",
                "pid": 4242,
                "concurrency": 1,
                **record,
            }
        )
    page.open("/workers")
    expected = {"w-busy": "RUNNING", "w-idle": "IDLE", "w-gone": "DISCONNECTED"}
    expected["w-stopped"] = "STOPPED"
    page.wait(
        lambda: {key: page.row_data("workers", key, "state") for key in expected} == expected,
        "every worker with its state",
    )
    assert page.cell_text("workers", "w-busy", 2) == "gpu, default"
    assert (
        page.js("return document.querySelector('tr[data-key=\"w-busy\"] a').getAttribute('href')")
        == f"#/runs/{run_id}"
    )
    assert page.cell_text("workers", "w-gone", 4).startswith("10 min")
    page.screenshot("workers")


def test_plugins_view_lists_the_gateway_plugins(page: Page):
    page.open("/plugins")
    names = ["dlq", "flow_resolver", "schedule_times", "sha256", "yaml_flow", "yaml_policy"]
    page.wait(lambda: sorted(page.row_keys("plugins")) == names, "the built-in plugins")
    assert "pyoco_check_workflow_yaml" in page.cell_text("plugins", "yaml_policy", 4)
    assert page.cell_text("plugins", "sha256", 2) == "built-in"
    page.screenshot("plugins")


def test_registry_and_each_workers_synced_plugins_are_shown(
    page: Page, ops: NatsOps, dash_settings: Settings
):
    from pyoco_server.plugin_registry.records import Distribution, Release

    filename = "team_flows-0.2.0-py3-none-any.whl"
    release = Release(filename, "team-flows", "0.2.0", "ab" * 32, 1234, ("gpu",))
    release = dataclasses.replace(release, signature={"key_id": "0123456789abcdef"})
    document = Distribution("team-flows", [release])

    async def publish() -> None:
        kv = await ops.js.key_value(dash_settings.plugin_registry_kv_bucket)
        await kv.put("dist.team-flows", document.encode())

    ops.call(publish())
    ops.put_worker(
        {
            "worker_id": "w-sync",
            "state": "IDLE",
            "heartbeat_at": time.time(),
            "tags": ["gpu"],
            "plugin_sync": {"state": "watching"},
            "plugins": [
                {
                    "distribution": "team-flows",
                    "version": "0.2.0",
                    "state": "failed",
                    "reason": "untrusted_key",
                    "active_version": "0.1.0",
                }
            ],
        }
    )
    page.open("/workers")
    page.wait(lambda: page.cell_text("workers", "w-sync", 6), "the synced plugins cell")
    text = page.cell_text("workers", "w-sync", 6)
    assert "team-flows 0.2.0" in text and "untrusted_key" in text and "running 0.1.0" in text
    page.open("/plugins")
    page.wait(lambda: "w-sync" in page.row_keys("synced-plugins"), "the worker's synced plugins")
    page.open("/registry")
    page.wait(lambda: page.row_keys("wheels") == [filename], "the published wheel")
    assert page.cell_text("wheels", filename, 3) == "0123456789abcdef"
    assert page.cell_text("wheels", filename, 2) == "gpu"
    assert page.page_errors() == []


def test_queues_view_shows_depth_per_tag(page: Page, gateway: DashboardGateway):
    tag = f"q{uuid.uuid4().hex[:6]}"
    submit(gateway.url, "queued", tag=tag)
    submit(gateway.url, "queued", tag=tag)
    page.open("/queues")
    page.wait(lambda: page.cell_text("queues", tag, 1) == "2", "depth 2 on the new tag")
    if not gateway.has("/dlq"):
        page.wait(
            lambda: page.js("return document.querySelector('.view').dataset.dlq") == "unavailable",
            "the DLQ section to say it is not available",
        )
        assert "not available" in page.text('[data-role="dlq-status"]')
    page.screenshot("queues")


# --- safety --------------------------------------------------------------------------------


def test_server_values_render_as_text_never_as_html(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    run_id = submit(gateway.url, PROBE, params={"note": PROBE})
    task = f"{PROBE}task"
    ops.update_run(
        run_id,
        status="FAILED",
        worker_id=PROBE,
        start_time=time.time() - 1,
        end_time=time.time(),
        error=f"{PROBE}<script>window.__pwned=2</script>",
        tasks={task: "FAILED"},
        task_records={
            task: {
                "state": "FAILED",
                "started_at": time.time() - 1,
                "ended_at": time.time(),
                "error": PROBE,
                "output": PROBE,
            }
        },
    )
    ops.put_worker(
        {"worker_id": "w-probe", "state": "IDLE", "tags": [PROBE], "heartbeat_at": time.time()}
    )

    page.open(f"/runs?q={run_id}")
    page.wait(lambda: page.row_keys("runs") == [run_id], "the probe run")
    assert page.cell_text("runs", run_id, 2) == PROBE
    assert page.cell_text("runs", run_id, 4) == PROBE

    page.open(f"/runs/{run_id}")
    page.wait(lambda: page.row_keys("tasks") == [task], "the probe task")
    assert page.text('[data-role="error"]') == f"{PROBE}<script>window.__pwned=2</script>"
    assert json.dumps(PROBE) in page.text('[data-role="params"]')
    assert page.cell_text("tasks", task, 4) == PROBE
    assert page.js("return document.querySelectorAll('main img, main script').length") == 0

    page.open("/workers")
    page.wait(lambda: page.cell_text("workers", "w-probe", 2) == PROBE, "the probe tag")
    assert page.js("return document.querySelectorAll('main img').length") == 0
    assert page.js("return window.__pwned === undefined")


def test_pages_are_sent_with_a_strict_content_security_policy(gateway: DashboardGateway):
    for path in ("/", "/ui/app.js", "/ui/style.css", "/ui/config.json"):
        answer = httpx.get(gateway.url + path, timeout=5)
        assert answer.status_code == 200, path
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "require-trusted-types-for 'script'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_trusted_types_refuse_html_strings_on_the_page(page: Page):
    """The policy itself works in the browser: assigning HTML to innerHTML throws."""
    page.open("/plugins")
    refused = page.js(
        "try { document.body.innerHTML = '<img src=x>'; return false }"
        " catch (e) { return e instanceof TypeError }"
    )
    assert refused
    page.driver.get_log("browser")  # the deliberate violation is logged; do not report it


# --- accessibility and narrow screens ------------------------------------------------------


def test_keyboard_reaches_every_view_and_focus_follows(page: Page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.open("/runs")
    page.wait(lambda: page.js("return document.querySelector('.view').dataset.loaded"), "runs")
    for _ in range(10):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
        if page.js("return document.activeElement.textContent") == "Workers":
            break
    else:
        pytest.fail("Tab never reached the Workers link")
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    page.wait(lambda: page.js("return document.activeElement.tagName") == "H1", "focus on h1")
    assert page.js("return document.activeElement.textContent") == "Workers"
    assert (
        page.js("return document.querySelector('[data-nav=workers]').getAttribute('aria-current')")
        == "page"
    )
    unlabeled = page.js(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels || !e.labels.length).map(e => e.id)"
    )
    assert unlabeled == []


def test_narrow_screen_stacks_tables_without_horizontal_scrolling(
    page: Page, gateway: DashboardGateway
):
    run_id = submit(gateway.url, "a-rather-long-flow-name-for-a-narrow-phone-screen")
    page.driver.set_window_size(390, 844)
    page.open("/runs")
    page.wait(lambda: run_id in page.row_keys("runs"), "the run")
    viewport = page.js("return document.documentElement.clientWidth")
    assert page.js("return document.documentElement.scrollWidth") <= viewport
    display = page.js(
        "return getComputedStyle(document.querySelector('[data-role=runs] td')).display"
    )
    assert display == "grid", "table cells become labelled lines on narrow screens"
    label = page.js(
        "return getComputedStyle(document.querySelector('[data-role=runs] td'), '::before').content"
    )
    assert label == '"Run"'
    page.js("document.querySelector('[data-role=runs]').scrollIntoView()")
    page.screenshot("runs-narrow")
    page.click('[data-nav="workers"]')
    page.wait(lambda: page.js("return document.title").startswith("Workers"), "workers view")


# --- authentication ------------------------------------------------------------------------

PEPPER = "dashboard-test-pepper-0123456789"
KEY_HEADER = "X-Pyoco-Token"


@pytest.fixture(scope="module")
def auth_gateway(nats_server: EmbeddedNats, tmp_path_factory) -> DashboardGateway:
    settings: Settings = isolated_settings(nats_server.url)
    process = DashboardGateway(
        settings,
        tmp_path_factory.mktemp("dashboard-auth-gateway"),
        {
            "PYOCO_HTTP_AUTH_MODE": "api_key",
            "PYOCO_AUTH_PEPPER": PEPPER,
            "PYOCO_HTTP_API_KEY_HEADER": KEY_HEADER,
        },
    )
    yield process
    process.stop()


def test_api_key_is_asked_for_kept_in_session_storage_and_forgotten(
    page: Page, auth_gateway: DashboardGateway, ops: NatsOps
):
    settings = auth_gateway.settings
    key = ops.create_api_key(settings, PEPPER, "ops-team")
    other_key = ops.create_api_key(settings, PEPPER, "other-team")
    mine = submit(auth_gateway.url, "ours", headers={KEY_HEADER: key})
    theirs = submit(auth_gateway.url, "theirs", headers={KEY_HEADER: other_key})
    page = Page(page.driver, auth_gateway.url)

    page.open("/runs")
    page.wait(lambda: page.js("return document.getElementById('auth-dialog').open"), "prompt")
    assert page.text("#auth-title") == "API key required"
    assert page.text("#auth-header-name") == KEY_HEADER
    page.screenshot("auth-prompt")

    field = page.driver.find_element("id", "auth-key")
    field.send_keys("pyoco_0123456789abcdef.not-the-secret")
    page.click('#auth-form button[type="submit"]')
    page.wait(lambda: page.text("#auth-title") == "API key refused", "the refusal")
    assert page.js("return document.getElementById('auth-dialog').open")

    page.driver.find_element("id", "auth-key").send_keys(key)
    page.click('#auth-form button[type="submit"]')
    page.wait(lambda: page.row_keys("runs") == [mine], "the tenant's own run only")
    assert theirs not in page.row_keys("runs")
    assert page.js("return sessionStorage.getItem('pyoco.apiKey')") == key
    assert page.js("return localStorage.length") == 0
    assert key.split(".")[0].removeprefix("pyoco_") in page.text("#session-state")
    assert key.split(".")[1] not in page.text("body"), "the secret is never shown"

    page.click("#forget-key")
    page.wait(lambda: page.js("return document.getElementById('auth-dialog').open"), "prompt")
    assert page.js("return sessionStorage.getItem('pyoco.apiKey')") is None
    page.click("#auth-cancel")
    page.wait(lambda: page.text("#view-title") == "Sign in", "the sign-in panel")
    page.click('[data-role="signin"]')
    page.wait(lambda: page.js("return document.getElementById('auth-dialog').open"), "prompt")
    page.driver.find_element("id", "auth-key").send_keys(key)
    page.click('#auth-form button[type="submit"]')
    page.wait(lambda: page.row_keys("runs") == [mine], "the runs again")


# --- endpoints of other issues: these run once the gateway has them -----------------------


def needs(gateway: DashboardGateway, path: str, method: str, issue: str) -> None:
    if not gateway.has(path, method):
        pytest.skip(f"{method.upper()} {path} is not on this gateway yet ({issue})")


def test_cancel_button_cancels_a_pending_run_after_confirmation(
    page: Page, gateway: DashboardGateway
):
    needs(gateway, "/runs/{run_id}/cancel", "post", "issue 5")
    run_id = submit(gateway.url, "to-cancel", tag=f"idle{uuid.uuid4().hex[:6]}")
    page.open(f"/runs/{run_id}")
    page.wait(lambda: page.js("return !document.querySelector('[data-role=cancel]').hidden"), "")
    page.click('[data-role="cancel"]')
    page.wait(lambda: page.js("return document.getElementById('confirm-dialog').open"), "")
    page.click("#confirm-cancel")  # "Keep": nothing happens
    time.sleep(0.5)
    assert httpx.get(f"{gateway.url}/runs/{run_id}").json()["status"] == "PENDING"
    page.click('[data-role="cancel"]')
    page.click("#confirm-ok")
    page.wait(
        lambda: page.js("return document.querySelector('.view').dataset.status") == "CANCELLED",
        "CANCELLED",
    )
    assert httpx.get(f"{gateway.url}/runs/{run_id}").json()["status"] == "CANCELLED"


def test_run_detail_follows_through_watch(page: Page, gateway: DashboardGateway, ops: NatsOps):
    needs(gateway, "/runs/{run_id}/watch", "get", "issue 5")
    run_id = submit(gateway.url, "watched")
    page.open(f"/runs/{run_id}")
    page.wait(lambda: page.js("return document.querySelector('.view').dataset.live") == "watch", "")
    ops.update_run(run_id, status="RUNNING", worker_id="w", start_time=time.time())
    page.wait(
        lambda: page.js("return document.querySelector('.view').dataset.status") == "RUNNING", ""
    )
    ops.update_run(run_id, status="COMPLETED", end_time=time.time())
    page.wait(lambda: page.js("return document.querySelector('.view').dataset.live") == "done", "")


def test_dlq_entry_can_be_redriven_from_the_queues_view(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    needs(gateway, "/dlq/{seq}/redrive", "post", "issue 10")
    tag = f"dlq{uuid.uuid4().hex[:6]}"
    run_id = submit(gateway.url, "flaky", tag=tag)
    ops.update_run(run_id, status="FAILED", end_time=time.time(), error="RuntimeError: boom")
    ops.dead_letter(
        tag,
        {
            "timestamp": time.time(),
            "reason": "execution_error",
            "error": "RuntimeError: boom",
            "run_id": run_id,
            "flow_name": "flaky",
            "tag": tag,
            "tags": [tag],
            "worker_id": "w-1",
            "num_delivered": 1,
            "job": build_job(run_id, "flaky", tag, [tag], {}),
        },
    )
    page.open("/queues")
    row_with_run = (
        "return [...document.querySelectorAll('[data-role=dlq] tbody tr')]"
        ".find(r => r.textContent.includes(arguments[0]))"
    )
    page.wait(lambda: page.js(row_with_run, run_id), "the dead letter of the run")
    page.js(row_with_run + ".querySelector('[data-action=redrive]').click()", run_id)
    page.wait(lambda: page.js("return document.getElementById('confirm-dialog').open"), "")
    page.click("#confirm-ok")
    page.wait(lambda: "Redriven" in (page.text("#notice") or ""), "the redrive notice")
    status = httpx.get(f"{gateway.url}/runs/{run_id}", timeout=5).json()["status"]
    assert status == "PENDING"


def test_run_detail_shows_the_run_tree_with_links(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    parent = submit(gateway.url, "fan-out")
    children = [submit(gateway.url, "square") for _ in range(2)]
    for child, status in zip(children, ("COMPLETED", "RUNNING"), strict=True):
        ops.update_run(
            child, status=status, parent_run_id=parent, root_run_id=parent, spawn_depth=1
        )
    ops.update_run(
        parent,
        status="WAITING",
        child_run_ids=children,
        children_done={children[0]: "COMPLETED"},
        waiting_on=children,
    )
    page.open(f"/runs/{parent}")
    page.wait(
        lambda: page.js("return document.querySelectorAll('[data-role=children] li').length") == 2,
        "the children listed",
    )
    text = page.text('[data-role="tree"]')
    assert "1 of 2 ended" in text and "no worker slot held" in text
    links = page.js(
        "return [...document.querySelectorAll('[data-role=children] a')].map(a => a.hash)"
    )
    assert links == [f"#/runs/{child}" for child in children]

    page.open(f"/runs/{children[0]}")
    page.wait(lambda: "Parent" in page.text('[data-role="tree"]'), "the parent link")
    assert page.js("return document.querySelector('[data-role=tree] a').hash") == f"#/runs/{parent}"
