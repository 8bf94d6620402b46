"""Fire times through the ``pyoco_next_fire_time`` hook, deterministic jitter and run ids.

Everything here is a pure function of the schedule and a time, so every gateway computes the
same nominal times, the same jittered instants and the same run ids.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from typing import Any


class TriggerError(ValueError):
    """The trigger cannot be computed (invalid spec, or no plugin handles its kind)."""


def next_fire(pm: Any, spec: dict[str, Any], after: float) -> float | None:
    """The first nominal fire time strictly after ``after``; ``None`` when it never fires again.

    Raises :class:`TriggerError` when the spec is invalid or its kind is unknown.
    """
    try:
        result = pm.hook.pyoco_next_fire_time(spec=spec, after=after)
    except ValueError as exc:
        raise TriggerError(str(exc)) from None
    if result is None:
        raise TriggerError(f"no plugin computes fire times of kind {spec.get('kind')!r}")
    if isinstance(result, bool) or not isinstance(result, (int, float)) or math.isnan(result):
        raise TriggerError(f"pyoco_next_fire_time answered {result!r}, not a time")
    if math.isinf(result):
        return None
    if result <= after:
        raise TriggerError(f"pyoco_next_fire_time answered {result}, not after {after}")
    return round(float(result), 3)


def fire_times(
    pm: Any, spec: dict[str, Any], after: float, *, until: float | None = None, limit: int
) -> list[float]:
    """Up to ``limit`` nominal times after ``after`` (and at most ``until``), in order."""
    found: list[float] = []
    current = after
    while len(found) < limit:
        nxt = next_fire(pm, spec, current)
        if nxt is None or (until is not None and nxt > until):
            break
        found.append(nxt)
        current = nxt
    return found


def jitter_offset(schedule_id: str, nominal: float, jitter_sec: float) -> float:
    """The delay of one firing, in ``[0, jitter_sec)``: a hash of the schedule and the slot, so
    every gateway waits the same."""
    if jitter_sec <= 0:
        return 0.0
    digest = hashlib.sha256(f"{schedule_id}|{nominal:.3f}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return round(fraction * jitter_sec, 3)


def slot_text(nominal: float) -> str:
    """A nominal time as a compact UTC text usable in a KV key: ``20260101T090000Z`` (with
    ``.123`` milliseconds when not on a whole second)."""
    moment = datetime.fromtimestamp(round(nominal, 3), timezone.utc)
    text = moment.strftime("%Y%m%dT%H%M%S")
    millis = round(nominal * 1000) % 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def run_id_for(schedule_id: str, nominal: float) -> str:
    """The run id of the firing of ``schedule_id`` at ``nominal``: the same on every gateway
    and on every retry, so the run's atomic KV create admits one run per slot."""
    return f"s-{schedule_id}-{slot_text(nominal)}"


def iso(epoch: float | None) -> str | None:
    """``epoch`` as ISO 8601 UTC (``None`` stays ``None``)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")
