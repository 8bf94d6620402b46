"""structlog set-up (docs/error-ids.md): JSON lines or readable text, with service and run
context."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .config import Settings

#: Keys whose values are never written to a log line.
REDACTED_KEYS = frozenset(
    {"api_key", "x-api-key", "authorization", "secret", "pepper", "password", "token", "key"}
)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in REDACTED_KEYS:
            event[key] = "[redacted]"
    return event


def _rename_logger_key(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event


def _drop_traceback(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.pop("exc_info", None)
    exception = event.pop("exception", None)
    if isinstance(exception, list) and exception:
        last = exception[-1]
        event["exception"] = {
            "exc_type": last.get("exc_type"),
            "exc_value": last.get("exc_value"),
        }
    return event


def configure_logging(settings: Settings, service: str, stream: Any = None) -> None:
    """Configure structlog (and stdlib logging) for one process.

    :param service: ``pyoco-server:http`` or ``pyoco-server:worker`` (added to every line).
    :param stream: where lines go (default ``sys.stderr``).
    """
    stream = stream or sys.stderr
    level = getattr(logging, settings.log_level)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=settings.log_utc, key="ts"),
        structlog.processors.CallsiteParameterAdder(
            {
                structlog.processors.CallsiteParameter.PATHNAME,
                structlog.processors.CallsiteParameter.LINENO,
                structlog.processors.CallsiteParameter.FUNC_NAME,
            }
        ),
        _rename_logger_key,
        _redact,
    ]
    if settings.log_format == "json":
        processors.append(structlog.processors.dict_tracebacks)
        if not settings.log_include_traceback:
            processors.append(_drop_traceback)
        processors.append(structlog.processors.JSONRenderer())
    else:
        if not settings.log_include_traceback:
            processors.append(_drop_traceback)
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, force=True)


def get_logger(name: str) -> Any:
    """A lazy structlog logger whose lines carry ``logger=name`` (configured on first use)."""
    return structlog.wrap_logger(None, logger_name=name)
