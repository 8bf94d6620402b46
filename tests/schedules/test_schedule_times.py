"""Fire times: the built-in ``schedule_times`` plugin through the ``pyoco_next_fire_time`` hook
(cron DST rules of Debian cron, exact intervals, one-shots) and a plugin-added kind."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from pyoco_server.gateway.schedules.repair import nominal_of
from pyoco_server.gateway.schedules.timing import (
    TriggerError,
    fire_times,
    jitter_offset,
    next_fire,
    run_id_for,
)
from pyoco_server.hookspecs import hookimpl
from pyoco_server.plugins import build_plugin_manager


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager(plugins=())


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def local(epoch: float, zone: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime("%m-%d %H:%M%z")


def cron_times(pm, expression: str, zone: str, start: str, count: int) -> list[str]:
    spec = {"kind": "cron", "cron": expression, "timezone": zone, "end_at": None}
    return [local(t, zone) for t in fire_times(pm, spec, at(start), limit=count)]


# -- Debian cron DST rules ---------------------------------------------------------------------


def test_berlin_spring_fixed_time_in_the_skipped_hour_runs_once_at_the_transition(pm):
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
    times = cron_times(pm, "30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00+00:00", 3)
    assert times == ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"]


def test_berlin_autumn_fixed_time_in_the_repeated_hour_runs_once(pm):
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, the job runs once.
    times = cron_times(pm, "30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00+00:00", 3)
    assert times == ["10-24 02:30+0200", "10-25 02:30+0200", "10-26 02:30+0100"]


def test_berlin_wildcard_hour_keeps_real_time_rhythm_across_both_changes(pm):
    autumn = cron_times(pm, "30 * * * *", "Europe/Berlin", "2026-10-25T00:00:00+02:00", 4)
    assert autumn == [
        "10-25 00:30+0200",
        "10-25 01:30+0200",
        "10-25 02:30+0200",
        "10-25 02:30+0100",
    ]
    spring = cron_times(pm, "30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00", 3)
    assert spring == ["03-29 00:30+0100", "03-29 01:30+0100", "03-29 03:30+0200"]


def test_new_york_spring_and_autumn(pm):
    # 2026-03-08: 02:00 EST -> 03:00 EDT; 2026-11-01: 02:00 EDT -> 01:00 EST.
    spring = cron_times(pm, "30 2 * * *", "America/New_York", "2026-03-07T12:00:00+00:00", 3)
    assert spring == ["03-08 03:00-0400", "03-09 02:30-0400", "03-10 02:30-0400"]
    autumn = cron_times(pm, "30 1 * * *", "America/New_York", "2026-10-31T12:00:00+00:00", 3)
    assert autumn == ["11-01 01:30-0400", "11-02 01:30-0500", "11-03 01:30-0500"]
    every_20 = cron_times(pm, "*/20 1 * * *", "America/New_York", "2026-11-01T00:30:00-04:00", 7)
    assert every_20 == [
        "11-01 01:00-0400",
        "11-01 01:20-0400",
        "11-01 01:40-0400",
        "11-01 01:00-0500",
        "11-01 01:20-0500",
        "11-01 01:40-0500",
        "11-02 01:00-0500",
    ]


def test_a_controllable_clock_stepping_through_the_night_fires_each_slot_once(pm):
    """The dispatcher's view: step ``now`` minute by minute through both Berlin changes and
    collect what the planner fires; the fixed job fires exactly once per night."""
    from pyoco_server.gateway.schedules.planner import plan
    from pyoco_server.gateway.schedules.spec import Policies

    spec = {"kind": "cron", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "end_at": None}
    for night in ("2026-03-28T22:00:00+00:00", "2026-10-24T22:00:00+00:00"):
        cursor = at(night)
        fired: list[float] = []
        for minute in range(1, 8 * 60):
            now = at(night) + 60 * minute
            planned = plan(pm, spec, Policies(), cursor, now, grace=10.0)
            fired += planned.fire
            cursor = planned.cursor
        assert len(fired) == 1, [local(t, "Europe/Berlin") for t in fired]


# -- intervals, one-shots, end_at ---------------------------------------------------------------


def test_intervals_are_exact_durations_across_a_dst_change(pm):
    spec = {
        "kind": "interval",
        "interval_seconds": 3600.0,
        "start_at": at("2026-10-24T23:00:00+00:00"),
        "end_at": None,
    }
    times = fire_times(pm, spec, at("2026-10-24T22:00:00+00:00"), limit=5)
    assert [b - a for a, b in itertools.pairwise(times)] == [3600.0] * 4


def test_once_fires_once_and_end_at_stops_a_trigger(pm):
    once = {"kind": "once", "run_at": 1000.0, "end_at": None}
    assert next_fire(pm, once, 999.0) == 1000.0
    assert next_fire(pm, once, 1000.0) is None
    every = {"kind": "interval", "interval_seconds": 10.0, "start_at": 0.0, "end_at": 25.0}
    assert fire_times(pm, every, -1.0, limit=10) == [0.0, 10.0, 20.0]


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "cron", "cron": "61 * * * *", "timezone": "UTC"},
        {"kind": "cron", "cron": "* * *", "timezone": "UTC"},
        {"kind": "cron", "cron": "0 * * * *", "timezone": "Mars/Olympus"},
        {"kind": "rrule", "rule": "FREQ=DAILY"},
    ],
)
def test_invalid_or_unknown_triggers_are_refused_with_a_reason(pm, spec):
    with pytest.raises(TriggerError) as caught:
        next_fire(pm, {**spec, "end_at": None}, 0.0)
    assert str(caught.value)


def test_a_plugin_adds_a_trigger_kind_through_the_firstresult_hook():
    class Weekdays:
        """Fires at 09:00 UTC on weekdays: a business-day calendar a team could ship."""

        @hookimpl
        def pyoco_next_fire_time(self, spec, after):
            if spec.get("kind") != "weekdays":
                return None
            day = math.floor(after / 86400) * 86400
            while True:
                candidate = day + 9 * 3600
                weekday = datetime.fromtimestamp(candidate, timezone.utc).weekday()
                if candidate > after and weekday < 5:
                    return candidate
                day += 86400

    pm = build_plugin_manager(plugins=(), extra=[("weekdays", Weekdays())])
    spec = {"kind": "weekdays", "end_at": None}
    times = fire_times(pm, spec, at("2026-12-04T12:00:00+00:00"), limit=2)  # a Friday
    assert [datetime.fromtimestamp(t, timezone.utc).strftime("%a %H:%M") for t in times] == [
        "Mon 09:00",
        "Tue 09:00",
    ]
    # the built-in kinds still work next to it
    assert next_fire(pm, {"kind": "once", "run_at": 5.0, "end_at": None}, 0.0) == 5.0


def test_run_ids_and_jitter_are_deterministic_and_decodable():
    run_id = run_id_for("abc123", at("2026-01-02T03:04:05.250+00:00"))
    assert run_id == "s-abc123-20260102T030405.250Z"
    assert nominal_of(run_id) == ("abc123", at("2026-01-02T03:04:05.250+00:00"))
    assert run_id_for("abc123", at("2026-01-02T03:04:05+00:00")).endswith("T030405Z")
    offsets = {jitter_offset("abc123", 1000.0 + n, 30.0) for n in range(50)}
    assert all(0 <= offset < 30 for offset in offsets) and len(offsets) > 40
    assert jitter_offset("abc123", 1000.0, 30.0) == jitter_offset("abc123", 1000.0, 30.0)
