"""Catch-up after downtime, decided by the planner on a controllable clock (``now`` is an
argument): on-time slots, ``latest``, ``all`` (capped), ``skip`` and the catch-up window."""

from __future__ import annotations

import pytest

from pyoco_server.gateway.schedules.planner import newest_slots, plan
from pyoco_server.gateway.schedules.spec import Policies
from pyoco_server.plugins import build_plugin_manager

EVERY_10S = {"kind": "interval", "interval_seconds": 10.0, "start_at": 0.0, "end_at": None}
GRACE = 10.0


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager(plugins=())


def test_an_on_time_look_fires_the_slots_since_the_cursor(pm):
    planned = plan(pm, EVERY_10S, Policies(), cursor=995.0, now=1000.2, grace=GRACE)
    assert planned.fire == [1000.0] and planned.missed == 0 and planned.cursor == 1000.2


def test_latest_fires_one_run_for_a_whole_outage(pm):
    # down from 1000 to 1600: 60 slots, 59 of them late, one on time (1600)
    planned = plan(pm, EVERY_10S, Policies(catchup="latest"), 1000.0, 1600.5, GRACE)
    assert planned.fire == [1600.0] and planned.missed == 59
    # no slot within the grace (3 s): the newest late slot stands for the whole gap
    planned = plan(pm, EVERY_10S, Policies(catchup="latest"), 1000.0, 1605.5, 3.0)
    assert planned.fire == [1600.0] and planned.late_fired == 1 and planned.missed == 59


def test_all_fires_every_missed_slot_up_to_the_cap(pm):
    planned = plan(pm, EVERY_10S, Policies(catchup="all", max_catchup=100), 1000.0, 1300.5, GRACE)
    assert planned.fire == [1000.0 + 10 * n for n in range(1, 31)] and planned.missed == 0
    capped = plan(pm, EVERY_10S, Policies(catchup="all", max_catchup=5), 1000.0, 1300.5, GRACE)
    assert capped.fire == [1250.0, 1260.0, 1270.0, 1280.0, 1290.0, 1300.0]
    assert capped.late_fired == 5 and capped.missed == 24


def test_skip_fires_nothing_late(pm):
    planned = plan(pm, EVERY_10S, Policies(catchup="skip"), 1000.0, 1305.0, GRACE)
    assert planned.fire == [1300.0] and planned.missed == 29


def test_the_catchup_window_bounds_what_is_caught_up(pm):
    policies = Policies(catchup="all", catchup_window_sec=60.0)
    planned = plan(pm, EVERY_10S, policies, 1000.0, 2005.0, GRACE)
    assert planned.fire == [1950.0, 1960.0, 1970.0, 1980.0, 1990.0, 2000.0]
    assert planned.missed == 99 - 5  # 1010..1990 were late; 1950..1990 fired
    latest = plan(pm, EVERY_10S, Policies(catchup_window_sec=60.0), 1000.0, 1505.0, GRACE)
    assert latest.fire == [1500.0]


def test_a_long_outage_of_a_dense_trigger_is_planned_without_walking_it(pm):
    every_second = {"kind": "interval", "interval_seconds": 1.0, "start_at": 0.0, "end_at": None}
    planned = plan(pm, every_second, Policies(), 0.0, 30 * 86400.0 + 0.5, GRACE)
    assert planned.fire[-1] == 30 * 86400.0 and planned.missed > 2_000_000
    daily = {"kind": "cron", "cron": "0 9 * * *", "timezone": "UTC", "end_at": None}
    assert len(newest_slots(pm, daily, 0.0, 400 * 86400.0, 3)) == 3
