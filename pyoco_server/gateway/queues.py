"""What the gateway tells about waiting jobs: who serves a tag, how long its oldest job waits.

A PENDING run is never failed for waiting — a tag may simply have no worker yet. Instead
``GET /runs/{id}`` says whether any live worker serves the run's tag (:func:`queue_view`) and
``/metrics`` exposes the age of the oldest job per tag that no worker has taken
(:func:`oldest_waiting_ages`), so an operator can alert on it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from nats.js.errors import NotFoundError

from ..config import Settings
from ..log import get_logger
from .workers import serving

if TYPE_CHECKING:
    from .services import GatewayServices

log = get_logger(__name__)


async def queue_view(services: GatewayServices, snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """``{tag, workers[, note]}`` for a PENDING run: ``workers`` is the number of live workers
    pulling its tag; ``note`` says so when there are none. ``None`` if the workers cannot be
    read right now (the snapshot is answered without it)."""
    tag = snapshot.get("tag") or services.settings.default_tag
    try:
        workers = serving(await services.workers(), tag)
    except Exception as exc:
        log.warning("queue_view_failed", error=f"{type(exc).__name__}: {exc}")
        return None
    view: dict[str, Any] = {"tag": tag, "workers": len(workers)}
    if not workers:
        view["note"] = (
            f"no live worker serves tag {tag!r}: the run waits until one starts "
            f"(pyoco-worker --tags {tag})"
        )
    return view


async def oldest_waiting_ages(
    js: Any,
    settings: Settings,
    tags: list[str],
    consumers: dict[str, Any],
    first_seq: int,
) -> dict[str, float]:
    """Seconds the oldest job not yet delivered to a worker has waited, per tag (0: none).

    For a tag with a consumer that is the first message on ``pyoco.work.<tag>`` after the
    consumer's last delivered sequence; without a consumer (no worker ever served the tag),
    the tag's first message. One direct message lookup per tag.
    """

    async def age(tag: str) -> tuple[str, float]:
        consumer = consumers.get(tag)
        start = first_seq
        if consumer is not None and consumer.delivered is not None:
            start = max(start, (consumer.delivered.stream_seq or 0) + 1)
        try:
            message = await js.get_msg(
                settings.work_stream, seq=start, subject=settings.work_subject(tag), next=True
            )
        except NotFoundError:
            return tag, 0.0
        if message.time is None:
            return tag, 0.0
        return tag, max(0.0, time.time() - message.time.timestamp())

    ages: dict[str, float] = {}
    for result in await asyncio.gather(*(age(tag) for tag in tags), return_exceptions=True):
        if isinstance(result, BaseException):
            log.warning("queue_age_failed", error=f"{type(result).__name__}: {result}")
            continue
        ages[result[0]] = result[1]
    return ages
