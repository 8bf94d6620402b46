"""The schedule figures of ``GET /metrics`` (per gateway: sum them over gateways).

* ``pyoco_schedule_firings_total`` — runs this gateway created for a schedule slot;
* ``pyoco_schedule_misses_total`` — late slots that did not fire (catch-up policy, window);
* ``pyoco_schedule_skips_total{reason}`` — slots that did not fire because of the overlap
  policy (``overlap``, ``buffer_full``), a revoked creating key (``key_revoked``), the YAML
  policy (``policy_violation``) or a job too large to publish (``job_too_large``);
* ``pyoco_schedule_slots_taken_total`` — slots another gateway (or an earlier attempt) had
  already created: the atomic create doing its job;
* ``pyoco_schedule_lateness_seconds`` — from a slot's due instant (nominal time + jitter) to
  the creation of its run, for on-time slots;
* ``pyoco_schedules_active`` — schedules this gateway's dispatcher follows and that are not
  paused or finished.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ScheduleMetrics:
    """Counters kept by the dispatcher; :meth:`collectors` are added to the gateway's
    registry."""

    def __init__(self) -> None:
        self.firings = Counter(
            "pyoco_schedule_firings", "Runs this gateway created for schedule slots.", registry=None
        )
        self.misses = Counter(
            "pyoco_schedule_misses",
            "Late schedule slots that did not fire (catch-up policy or window).",
            registry=None,
        )
        self.skips = Counter(
            "pyoco_schedule_skips",
            "Schedule slots that did not fire, by reason.",
            ["reason"],
            registry=None,
        )
        self.slots_taken = Counter(
            "pyoco_schedule_slots_taken",
            "Schedule slots whose run already existed (created by another gateway or attempt).",
            registry=None,
        )
        self.lateness = Histogram(
            "pyoco_schedule_lateness_seconds",
            "Delay from a slot's due instant to the creation of its run (on-time slots).",
            buckets=LATENESS_BUCKETS,
            registry=None,
        )
        self.active = Gauge(
            "pyoco_schedules_active",
            "Schedules this gateway follows that are neither paused nor finished.",
            registry=None,
        )

    def collectors(self) -> list[object]:
        return [self.firings, self.misses, self.skips, self.slots_taken, self.lateness, self.active]
