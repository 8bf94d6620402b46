"""``PYOCO_TRACE_PLUGINS=1``: one log line before and one after every hook call.

Arguments and results are *summarised*, never dumped: a trace is meant for finding out which
plugin answered and why, and it must be safe to leave on in production for a while. So:

* ``settings`` arguments are left out (they hold the NATS URL and the auth pepper);
* run ``params`` and workflow ``flow.defaults`` show their key names only, never values;
* values under keys that look secret (``password``, ``token``, ``secret``, ``api_key``…) are
  replaced by ``[redacted]``;
* the workflow YAML text and raw bytes show their size, task records their count;
* long text is cut, containers are shown to a small depth and length;
* a pyoco ``Flow`` shows its name and task names; unknown objects only their type.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

#: Logger name of the trace lines.
TRACE_LOGGER = "pyoco_server.plugins"
MAX_TEXT_CHARS = 120
MAX_ITEMS = 20
MAX_DEPTH = 3
#: Mapping keys whose values are replaced by their key names (values may be personal data).
KEYS_ONLY = frozenset({"params", "defaults"})
#: Mapping keys whose values are only measured.
MEASURED = frozenset({"workflow_yaml", "task_records", "raw"})
#: Parts of a key name that mark a secret (``*_id`` keys are identifiers, not secrets).
SECRET_MARKERS = ("password", "passwd", "secret", "token", "pepper", "authorization", "api_key")
#: Arguments never shown at all.
OMITTED_ARGUMENTS = frozenset({"settings"})


def _secret(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    if lowered.endswith("_id"):
        return False
    return lowered in ("key", "x_api_key") or any(mark in lowered for mark in SECRET_MARKERS)


def _text(value: str) -> str:
    if len(value) <= MAX_TEXT_CHARS:
        return value
    return f"{value[:MAX_TEXT_CHARS]}…({len(value)} chars)"


def _measure(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"<{len(value)} {unit}>"
    if isinstance(value, Mapping):
        return f"<{len(value)} entries>"
    return f"<{type(value).__name__}>"


def _keys_only(value: Any) -> Any:
    if isinstance(value, Mapping):
        return f"<keys: {', '.join(sorted(str(key) for key in value)) or 'none'}>"
    return f"<{type(value).__name__}>"


def _mapping(value: Mapping[Any, Any], depth: int) -> Any:
    if depth >= MAX_DEPTH:
        return f"<{len(value)} entries>"
    shown: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == MAX_ITEMS:
            shown["…"] = f"+{len(value) - MAX_ITEMS} more"
            break
        name = str(key)
        if _secret(name):
            shown[name] = "[redacted]"
        elif name in KEYS_ONLY:
            shown[name] = _keys_only(item)
        elif name in MEASURED:
            shown[name] = _measure(item)
        else:
            shown[name] = summarise(item, depth + 1)
    return shown


def _flow(value: Any) -> str | None:
    tasks = getattr(value, "tasks", None)
    name = getattr(value, "name", None)
    if type(value).__name__ != "Flow" or not isinstance(name, str) or tasks is None:
        return None
    names = sorted(getattr(task, "name", "?") for task in tasks)
    return f"<Flow {name!r}: {', '.join(names[:MAX_ITEMS])}>"


def summarise(value: Any, depth: int = 0) -> Any:
    """A short, JSON-friendly and secret-free picture of a hook argument or result."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return _mapping(value, depth)
    if isinstance(value, Sequence):
        if depth >= MAX_DEPTH:
            return f"<{len(value)} items>"
        items = [summarise(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"+{len(value) - MAX_ITEMS} more")
        return items
    flow = _flow(value)
    if flow is not None:
        return flow
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            spec.name: getattr(value, spec.name)
            for spec in dataclasses.fields(value)
            if spec.name not in OMITTED_ARGUMENTS
        }
        return {"type": type(value).__name__, **_mapping(fields, depth)}
    return f"<{type(value).__name__}>"


def summarise_arguments(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every hook argument except ``settings``, summarised."""
    shown = {name: value for name, value in kwargs.items() if name not in OMITTED_ARGUMENTS}
    return _mapping(shown, 0)


def enable_tracing(pm: pluggy.PluginManager, log: Any) -> None:
    """Log every hook call of ``pm`` (``hook_call``) and its outcome (``hook_result``)."""
    starts = threading.local()

    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        stack = starts.__dict__.setdefault("stack", [])
        stack.append(time.perf_counter())
        log.info(
            "hook_call",
            hook=hook_name,
            plugins=[impl.plugin_name for impl in reversed(impls)],
            args=summarise_arguments(kwargs),
        )

    def after(
        outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        stack = starts.__dict__.get("stack") or [time.perf_counter()]
        elapsed_ms = (time.perf_counter() - stack.pop()) * 1000
        exception = outcome.exception
        log.info(
            "hook_result",
            hook=hook_name,
            result=None if exception else summarise(outcome.get_result()),
            error=_text(f"{type(exception).__name__}: {exception}") if exception else None,
            duration_ms=round(elapsed_ms, 3),
        )

    pm.add_hookcall_monitoring(before, after)
