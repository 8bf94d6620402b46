"""structlog set-up (docs/error-ids.md): JSON lines or readable text, with service and run
context.

Every log line is bounded in size and in the time it takes to render, whatever is logged: an
exception is rendered by :func:`exception_chain` (no local variables, at most
:data:`MAX_FRAMES` frames and :data:`MAX_CHAINED` chained exceptions, messages cut at
:data:`MAX_VALUE_CHARS`), never by rich's traceback renderer; any other value is cut by
:func:`bounded_value`. A log call made on the event loop therefore cannot stall it, however
deep or large the data that caused the error.
"""

from __future__ import annotations

import logging
import reprlib
import sys
import traceback
from types import ModuleType, TracebackType
from typing import Any

from .config import Settings


def _import_structlog_without_rich() -> ModuleType:
    """structlog imports rich whenever it is installed (a development install has it through
    schemathesis), only for renderers this module never uses: ~5 MiB and ~50 ms in every
    process that logs. Hide rich while structlog loads; anything importing rich later gets it
    as usual."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` fail
    try:
        import structlog
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]
    return structlog


#: The structlog module; import it from here (``from ..log import structlog``) so that it is
#: loaded without rich (see :func:`_import_structlog_without_rich`).
structlog = _import_structlog_without_rich()

#: Frames kept per exception (the innermost ones, where it was raised).
MAX_FRAMES = 30
#: Exceptions kept of a ``__cause__`` / ``__context__`` chain.
MAX_CHAINED = 5
#: Longest string value (an exception message, a field) written to a log line.
MAX_VALUE_CHARS = 4000
#: Containers deeper or larger than this are logged as a shortened ``repr``.
MAX_LOGGED_DEPTH = 6
MAX_LOGGED_ITEMS = 200
_REPR = reprlib.Repr()
_REPR.maxlevel = MAX_LOGGED_DEPTH
_REPR.maxstring = 200
_REPR.maxother = 200
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 30

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


def _cut(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return text[:MAX_VALUE_CHARS] + f"... [{len(text) - MAX_VALUE_CHARS} characters cut]"


def _safe_str(value: Any) -> str:
    try:
        return _cut(str(value))
    except Exception:  # a __str__ that fails or recurses without end
        return f"<unprintable {type(value).__name__}>"


def _is_small(value: Any) -> bool:
    """True when ``value`` is a JSON-like container within the logged depth and size."""
    stack, items = [(value, 1)], 0
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children = list(current.values())
            if not all(isinstance(key, str) for key in current):
                return False
        elif isinstance(current, (list, tuple)):
            children = list(current)
        elif current is None or isinstance(current, (bool, int, float)):
            continue
        elif isinstance(current, str):
            if len(current) > MAX_VALUE_CHARS:
                return False
            continue
        else:
            return False
        items += len(children)
        if depth > MAX_LOGGED_DEPTH or items > MAX_LOGGED_ITEMS:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def bounded_value(value: Any) -> Any:
    """``value`` as it may be logged: scalars and small containers as they are, long strings
    cut, anything else (deep, large or foreign objects) as a shortened ``repr``."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, BaseException):
        return _safe_str(value)
    if isinstance(value, (dict, list, tuple)) and _is_small(value):
        return value
    try:
        return _cut(_REPR.repr(value))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _bound_values(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key not in ("exc_info", "exception"):
            event[key] = bounded_value(value)
    return event


def _exc_info(value: Any) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        return value  # type: ignore[return-value]
    if value is True or (value and not isinstance(value, tuple)):
        info = sys.exc_info()
        return info if info[1] is not None else None  # type: ignore[return-value]
    return None


def exception_chain(error: BaseException) -> list[dict[str, Any]]:
    """An exception and its causes, outermost cause first (as structlog lays them out):
    ``exc_type``, ``exc_value`` and the innermost :data:`MAX_FRAMES` frames (file, line,
    function) of each; never local variables, never source lines."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < MAX_CHAINED and current not in chain:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    documents = []
    for item in reversed(chain):
        frames = traceback.StackSummary.extract(
            traceback.walk_tb(item.__traceback__), limit=-MAX_FRAMES, lookup_lines=False
        )
        documents.append(
            {
                "exc_type": type(item).__name__,
                "exc_value": _safe_str(item),
                "frames": [
                    {"filename": frame.filename, "lineno": frame.lineno, "name": frame.name}
                    for frame in frames
                ],
            }
        )
    return documents


def render_exception_text(chain: list[dict[str, Any]]) -> str:
    """The bounded plain-text traceback of :func:`exception_chain`'s output."""
    lines: list[str] = []
    for index, item in enumerate(chain):
        if index:
            lines.append("\nwhich led to:\n")
        lines.append("Traceback (innermost frames last):")
        for frame in item["frames"]:
            lines.append(
                f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}'
            )
        lines.append(f"{item['exc_type']}: {item['exc_value']}")
    return "\n".join(lines)


def _bounded_exception(as_text: bool) -> Any:
    def processor(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        info = _exc_info(event.pop("exc_info", None))
        if info is not None:
            chain = exception_chain(info[1])
            event["exception"] = render_exception_text(chain) if as_text else chain
        return event

    return processor


def _drop_traceback(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.pop("exc_info", None)
    exception = event.pop("exception", None)
    if isinstance(exception, list) and exception:
        last = exception[-1]
        event["exception"] = {
            "exc_type": last.get("exc_type"),
            "exc_value": last.get("exc_value"),
        }
    elif isinstance(exception, str) and exception:
        event["exception"] = exception.rsplit("\n", 1)[-1]
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
        _bound_values,
        _bounded_exception(as_text=settings.log_format == "text"),
    ]
    if not settings.log_include_traceback:
        processors.append(_drop_traceback)
    if settings.log_format == "json":
        processors.append(structlog.processors.JSONRenderer(default=_safe_str))
    else:
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, force=True)


def _install_bounded_default() -> None:
    """Until :func:`configure_logging` runs (an embedding application, the test suite),
    structlog's own defaults apply, which render tracebacks with rich, locals included: replace
    them with the same output bounded as above. A configuration made earlier is left alone."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            _bound_values,
            _bounded_exception(as_text=True),
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    )


_install_bounded_default()


def get_logger(name: str) -> Any:
    """A lazy structlog logger whose lines carry ``logger=name`` (configured on first use)."""
    return structlog.wrap_logger(None, logger_name=name)
