"""The schedules view and the schedule fact of a run, in a real headless Chromium."""

from __future__ import annotations

import time

import httpx
from dashtools import DashboardGateway, NatsOps, Page, submit


def test_schedules_view_shows_next_fire_and_pauses_and_resumes(
    page: Page, gateway: DashboardGateway, ops: NatsOps
):
    # A one-shot far in the future: it never fires while the suite runs.
    created = httpx.post(
        f"{gateway.url}/schedules",
        json={"flow_name": "nightly", "run_at": time.time() + 30 * 86400},
        timeout=10,
    )
    assert created.status_code == 200, created.text
    sid = created.json()["schedule_id"]
    try:
        page.open("/schedules")
        page.wait(lambda: sid in page.row_keys("schedules"), "the schedule's row")
        assert page.cell_text("schedules", sid, 1) == "ACTIVE"
        assert page.cell_text("schedules", sid, 2) == "once"
        page.click(f'tr[data-key="{sid}"] button[data-action="pause"]')
        page.wait(lambda: page.cell_text("schedules", sid, 1) == "PAUSED", "PAUSED")
        assert httpx.get(f"{gateway.url}/schedules/{sid}").json()["paused"] is True
        page.click(f'tr[data-key="{sid}"] button[data-action="resume"]')
        page.wait(lambda: page.cell_text("schedules", sid, 1) == "ACTIVE", "ACTIVE again")
        page.screenshot("schedules")

        run_id = submit(gateway.url, "nightly", tag=f"idle{sid[:6]}")
        ops.update_run(run_id, schedule_id=sid, schedule_nominal_at=1_800_000_000.0)
        page.open(f"/runs/{run_id}")
        page.wait(lambda: sid in (page.text('[data-role="facts"]') or ""), "the schedule fact")
        assert "2027-01-15T08:00:00" in page.text('[data-role="facts"]')
    finally:
        httpx.delete(f"{gateway.url}/schedules/{sid}", timeout=10)
