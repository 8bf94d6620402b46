"""Typed settings built once at start-up from the environment and CLI flags.

Every variable and flag is listed in docs/configuration.md (a test checks it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .nesting import DEFAULT_MAX_NESTING_DEPTH, MAX_NESTING_DEPTH_LIMIT

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline ("gpu\n" is no tag).
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\Z")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\Z")
SUBJECT_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")
#: The accepted spellings of numbers: ASCII digits only (no ``1_000``, no other scripts).
INTEGER_FORM = re.compile(r"[+-]?[0-9]+")
DECIMAL_FORM = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AUTH_MODES = ("none", "api_key")
LOG_FORMATS = ("json", "text")
#: ``PYOCO_DASHBOARD_LANG``: ``auto`` follows the browser's preferred languages.
DASHBOARD_LANGS = ("auto", "ja", "en")
#: Shortest ``PYOCO_AUTH_PEPPER`` accepted (it is optional; when set it must be a secret).
MIN_PEPPER_CHARS = 16
#: ``PYOCO_INDEX_DIR`` value asking for a throwaway run index per gateway start.
INDEX_DIR_TEMPORARY = "temp"


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, raw, "a boolean (true/false, 1/0, yes/no, on/off)")


def _number_parser(kind: type, minimum: float, inclusive: bool = True) -> Callable[[str, str], Any]:
    bound = f">= {minimum}" if inclusive else f"> {minimum}"
    label = "an integer" if kind is int else "a number"

    form = INTEGER_FORM if kind is int else DECIMAL_FORM

    def parse(name: str, raw: str) -> Any:
        text = raw.strip()
        if not form.fullmatch(text):
            raise ConfigError(name, raw, f"{label} {bound}")
        value = kind(text)
        if not math.isfinite(value):
            raise ConfigError(name, raw, f"{label} {bound}")
        if value < minimum or (not inclusive and value == minimum):
            raise ConfigError(name, raw, f"{label} {bound}")
        return value

    return parse


def _pattern_parser(pattern: re.Pattern[str], description: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        if not pattern.match(value):
            raise ConfigError(name, raw, description)
        return value

    return parse


def _choice_parser(choices: tuple[str, ...], upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ConfigError(name, raw, "one of " + ", ".join(choices))
        return value

    return parse


def _list_parser(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _optional_list_parser(name: str, raw: str) -> tuple[str, ...] | None:
    return _list_parser(name, raw) or None


def _text_parser(name: str, raw: str) -> str:
    return raw


def _optional_text_parser(name: str, raw: str) -> str | None:
    return raw.strip() or None


_NAME = _pattern_parser(NAME_PATTERN, "letters, digits, '_' or '-' only")
_SUBJECT = _pattern_parser(
    SUBJECT_PREFIX_PATTERN, "dot-separated tokens of letters, digits, '_' or '-' (no wildcards)"
)
_TAG = _pattern_parser(TAG_PATTERN, "a tag matching ^[A-Za-z0-9_-]+$ (no '.')")
_POSITIVE = _number_parser(float, 0, inclusive=False)


def _nesting_parser(name: str, raw: str) -> int:
    value = _number_parser(int, 2)(name, raw)
    if value > MAX_NESTING_DEPTH_LIMIT:
        raise ConfigError(name, raw, f"an integer from 2 to {MAX_NESTING_DEPTH_LIMIT}")
    return value


_POSITIVE_INT = _number_parser(int, 1)


def _setting(env: str, parser: Callable[[str, str], Any], default: Any, secret: bool = False):
    return field(
        default=default,
        repr=not secret,
        metadata={"env": env, "parser": parser},
    )


@dataclass(frozen=True)
class Settings:
    """Every tunable of gateway and worker, validated; build it with :meth:`from_env`."""

    nats_url: str | None = _setting("PYOCO_NATS_URL", _optional_text_parser, None, secret=True)
    work_stream: str = _setting("PYOCO_WORK_STREAM", _NAME, "PYOCO_WORK")
    work_subject_prefix: str = _setting("PYOCO_WORK_SUBJECT_PREFIX", _SUBJECT, "pyoco.work")
    default_tag: str = _setting("PYOCO_DEFAULT_TAG", _TAG, "default")
    runs_kv_bucket: str = _setting("PYOCO_RUNS_KV_BUCKET", _NAME, "pyoco_runs")
    workers_kv_bucket: str = _setting("PYOCO_WORKERS_KV_BUCKET", _NAME, "pyoco_workers")
    worker_flags_kv_bucket: str = _setting(
        "PYOCO_WORKER_FLAGS_KV_BUCKET", _NAME, "pyoco_worker_flags"
    )
    workers_kv_ttl_sec: float = _setting("PYOCO_WORKERS_KV_TTL_SEC", _POSITIVE, 15.0)
    workers_retention_sec: float = _setting(
        "PYOCO_WORKERS_RETENTION_SEC", _number_parser(float, 0), 3600.0
    )
    run_heartbeat_interval_sec: float = _setting("PYOCO_RUN_HEARTBEAT_INTERVAL_SEC", _POSITIVE, 1.0)
    worker_heartbeat_interval_sec: float = _setting(
        "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC", _POSITIVE, 5.0
    )
    consumer_ack_wait_sec: float = _setting("PYOCO_CONSUMER_ACK_WAIT_SEC", _POSITIVE, 30.0)
    consumer_max_deliver: int = _setting("PYOCO_CONSUMER_MAX_DELIVER", _POSITIVE_INT, 20)
    consumer_max_ack_pending: int = _setting("PYOCO_CONSUMER_MAX_ACK_PENDING", _POSITIVE_INT, 200)
    ack_progress_interval_sec: float = _setting("PYOCO_ACK_PROGRESS_INTERVAL_SEC", _POSITIVE, 10.0)
    dlq_stream: str = _setting("PYOCO_DLQ_STREAM", _NAME, "PYOCO_DLQ")
    dlq_subject_prefix: str = _setting("PYOCO_DLQ_SUBJECT_PREFIX", _SUBJECT, "pyoco.dlq")
    dlq_publish_execution_error: bool = _setting(
        "PYOCO_DLQ_PUBLISH_EXECUTION_ERROR", _parse_bool, True
    )
    dlq_max_age_sec: float = _setting("PYOCO_DLQ_MAX_AGE_SEC", _POSITIVE, 604800.0)
    dlq_max_msgs: int = _setting("PYOCO_DLQ_MAX_MSGS", _POSITIVE_INT, 100000)
    dlq_max_bytes: int = _setting("PYOCO_DLQ_MAX_BYTES", _POSITIVE_INT, 536870912)
    dlq_list_scan_max: int = _setting("PYOCO_DLQ_LIST_SCAN_MAX", _POSITIVE_INT, 10000)
    run_lost_after_sec: float = _setting("PYOCO_RUN_LOST_AFTER_SEC", _POSITIVE, 30.0)
    run_retention_sec: float = _setting(
        "PYOCO_RUN_RETENTION_SEC", _number_parser(float, 0), 604800.0
    )
    index_dir: str | None = _setting("PYOCO_INDEX_DIR", _optional_text_parser, None)
    leases_kv_bucket: str = _setting("PYOCO_LEASES_KV_BUCKET", _NAME, "pyoco_leases")
    reconcile_interval_sec: float = _setting("PYOCO_RECONCILE_INTERVAL_SEC", _POSITIVE, 5.0)
    max_run_snapshot_bytes: int = _setting(
        "PYOCO_MAX_RUN_SNAPSHOT_BYTES", _number_parser(int, 1024), 262144
    )
    workflow_yaml_max_bytes: int = _setting("PYOCO_WORKFLOW_YAML_MAX_BYTES", _POSITIVE_INT, 262144)
    http_max_body_bytes: int = _setting("PYOCO_HTTP_MAX_BODY_BYTES", _POSITIVE_INT, 1048576)
    max_nesting_depth: int = _setting(
        "PYOCO_MAX_NESTING_DEPTH", _nesting_parser, DEFAULT_MAX_NESTING_DEPTH
    )
    http_nats_timeout_sec: float = _setting("PYOCO_HTTP_NATS_TIMEOUT_SEC", _POSITIVE, 2.0)
    idempotency_kv_bucket: str = _setting("PYOCO_IDEMPOTENCY_KV_BUCKET", _NAME, "pyoco_idempotency")
    idempotency_ttl_sec: float = _setting("PYOCO_IDEMPOTENCY_TTL_SEC", _POSITIVE, 86400.0)
    yaml_allowed_callables: tuple[str, ...] = _setting(
        "PYOCO_YAML_ALLOWED_CALLABLES", _list_parser, ()
    )
    yaml_allowed_env: tuple[str, ...] = _setting("PYOCO_YAML_ALLOWED_ENV", _list_parser, ())
    http_auth_mode: str = _setting("PYOCO_HTTP_AUTH_MODE", _choice_parser(AUTH_MODES), "none")
    http_api_key_header: str = _setting(
        "PYOCO_HTTP_API_KEY_HEADER",
        _pattern_parser(re.compile(r"^[A-Za-z0-9-]+\Z"), "an HTTP header name"),
        "X-API-Key",
    )
    auth_kv_bucket: str = _setting("PYOCO_AUTH_KV_BUCKET", _NAME, "pyoco_auth")
    auth_pepper: str = _setting("PYOCO_AUTH_PEPPER", _text_parser, "", secret=True)
    auth_cache_ttl_sec: float = _setting("PYOCO_AUTH_CACHE_TTL_SEC", _number_parser(float, 0), 5.0)
    wheel_object_store_bucket: str = _setting(
        "PYOCO_WHEEL_OBJECT_STORE_BUCKET", _NAME, "pyoco_wheels"
    )
    wheel_history_kv_bucket: str = _setting(
        "PYOCO_WHEEL_HISTORY_KV_BUCKET", _NAME, "pyoco_wheel_history"
    )
    plugin_registry_kv_bucket: str = _setting(
        "PYOCO_PLUGIN_REGISTRY_KV_BUCKET", _NAME, "pyoco_plugin_registry"
    )
    wheel_max_bytes: int = _setting("PYOCO_WHEEL_MAX_BYTES", _POSITIVE_INT, 67108864)
    plugin_publish_without_auth: bool = _setting(
        "PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH", _parse_bool, False
    )
    plugin_trusted_keys: tuple[str, ...] = _setting("PYOCO_PLUGIN_TRUSTED_KEYS", _list_parser, ())
    plugin_sync: bool = _setting("PYOCO_PLUGIN_SYNC", _parse_bool, False)
    plugin_sync_dir: str = _setting("PYOCO_PLUGIN_SYNC_DIR", _text_parser, ".pyoco/plugins")
    jetstream_replicas: int = _setting("PYOCO_JETSTREAM_REPLICAS", _number_parser(int, 1), 1)
    spawn_kv_bucket: str = _setting("PYOCO_SPAWN_KV_BUCKET", _NAME, "pyoco_spawn")
    spawn_max_depth: int = _setting("PYOCO_SPAWN_MAX_DEPTH", _number_parser(int, 0), 5)
    spawn_max_children: int = _setting("PYOCO_SPAWN_MAX_CHILDREN", _POSITIVE_INT, 1000)
    spawn_max_parallel: int = _setting("PYOCO_SPAWN_MAX_PARALLEL", _POSITIVE_INT, 100)
    spawn_requires_approval: bool = _setting("PYOCO_SPAWN_REQUIRES_APPROVAL", _parse_bool, True)
    cancel_grace_period_sec: float = _setting("PYOCO_CANCEL_GRACE_PERIOD_SEC", _POSITIVE, 30.0)
    watch_heartbeat_interval_sec: float = _setting(
        "PYOCO_WATCH_HEARTBEAT_INTERVAL_SEC", _POSITIVE, 5.0
    )
    watch_max_sec: float = _setting("PYOCO_WATCH_MAX_SEC", _POSITIVE, 3600.0)
    worker_concurrency: int = _setting("PYOCO_WORKER_CONCURRENCY", _POSITIVE_INT, 1)
    worker_grace_period_sec: float = _setting(
        "PYOCO_WORKER_GRACE_PERIOD_SEC", _number_parser(float, 0), 30.0
    )
    schedules_kv_bucket: str = _setting("PYOCO_SCHEDULES_KV_BUCKET", _NAME, "pyoco_schedules")
    schedule_workflows_kv_bucket: str = _setting(
        "PYOCO_SCHEDULE_WORKFLOWS_KV_BUCKET", _NAME, "pyoco_schedule_workflows"
    )
    schedules_enabled: bool = _setting("PYOCO_SCHEDULES_ENABLED", _parse_bool, True)
    schedules_max_per_tenant: int = _setting("PYOCO_SCHEDULES_MAX_PER_TENANT", _POSITIVE_INT, 1000)
    schedule_min_interval_sec: float = _setting("PYOCO_SCHEDULE_MIN_INTERVAL_SEC", _POSITIVE, 1.0)
    schedule_misfire_grace_sec: float = _setting(
        "PYOCO_SCHEDULE_MISFIRE_GRACE_SEC", _POSITIVE, 10.0
    )
    plugins: tuple[str, ...] | None = _setting("PYOCO_PLUGINS", _optional_list_parser, None)
    disable_plugins: tuple[str, ...] = _setting("PYOCO_DISABLE_PLUGINS", _list_parser, ())
    trace_plugins: bool = _setting("PYOCO_TRACE_PLUGINS", _parse_bool, False)
    dashboard_lang: str = _setting("PYOCO_DASHBOARD_LANG", _choice_parser(DASHBOARD_LANGS), "auto")
    log_level: str = _setting("PYOCO_LOG_LEVEL", _choice_parser(LOG_LEVELS, upper=True), "INFO")
    log_format: str = _setting("PYOCO_LOG_FORMAT", _choice_parser(LOG_FORMATS), "json")
    log_utc: bool = _setting("PYOCO_LOG_UTC", _parse_bool, True)
    log_include_traceback: bool = _setting("PYOCO_LOG_INCLUDE_TRACEBACK", _parse_bool, True)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        flag_names: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), then apply ``overrides``.

        ``overrides`` maps field names to values that came from CLI flags; ``None`` values are
        ignored so an absent flag leaves the environment in force. ``flag_names`` maps field
        names to the flag that set them, so an error names what the user typed. Raises
        :class:`ConfigError` naming the variable (or flag) for any invalid value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = environ.get(name)
            if raw is not None and (raw.strip() or spec.metadata["parser"] is _text_parser):
                values[spec.name] = spec.metadata["parser"](name, raw)
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            spec = _FIELDS.get(key)
            if spec is None:
                raise KeyError(f"unknown setting {key!r}")
            raw = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
            source = (flag_names or {}).get(key, spec.metadata["env"])
            value = spec.metadata["parser"](source, raw)
            values[key] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check the rules that relate several settings; raise :class:`ConfigError`."""
        if self.ack_progress_interval_sec >= self.consumer_ack_wait_sec:
            raise ConfigError(
                "PYOCO_ACK_PROGRESS_INTERVAL_SEC",
                self.ack_progress_interval_sec,
                f"a number below PYOCO_CONSUMER_ACK_WAIT_SEC ({self.consumer_ack_wait_sec})",
            )
        if self.worker_heartbeat_interval_sec >= self.workers_kv_ttl_sec:
            raise ConfigError(
                "PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC",
                self.worker_heartbeat_interval_sec,
                f"a number below PYOCO_WORKERS_KV_TTL_SEC ({self.workers_kv_ttl_sec})",
            )
        if self.run_lost_after_sec <= self.run_heartbeat_interval_sec:
            raise ConfigError(
                "PYOCO_RUN_LOST_AFTER_SEC",
                self.run_lost_after_sec,
                "a number above PYOCO_RUN_HEARTBEAT_INTERVAL_SEC "
                f"({self.run_heartbeat_interval_sec})",
            )
        pepper_in_use = self.http_auth_mode == "api_key" and self.auth_pepper
        if pepper_in_use and len(self.auth_pepper) < MIN_PEPPER_CHARS:
            raise ConfigError(
                "PYOCO_AUTH_PEPPER",
                f"<{len(self.auth_pepper)} characters, hidden>",
                f"unset, or a secret of at least {MIN_PEPPER_CHARS} characters (the same "
                "value on every gateway and for pyoco-server-admin)",
            )
        if self.work_subject_prefix == self.dlq_subject_prefix:
            raise ConfigError(
                "PYOCO_DLQ_SUBJECT_PREFIX",
                self.dlq_subject_prefix,
                "a subject prefix different from PYOCO_WORK_SUBJECT_PREFIX",
            )

    def to_env(self) -> dict[str, str]:
        """The ``PYOCO_*`` environment from which :meth:`from_env` builds these settings again.

        What a gateway or worker process started for these settings is given (tests,
        benchmarks, :mod:`pyoco_server.testing`). Unset optional values are left out. The
        result holds secrets (``PYOCO_AUTH_PEPPER``, credentials in ``PYOCO_NATS_URL``): hand
        it to a process, never log it.
        """
        env: dict[str, str] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, tuple):
                text = ",".join(value)
            else:
                text = str(value)
            env[spec.metadata["env"]] = text
        return env

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with ``overrides`` applied and validated again."""
        settings = dataclasses.replace(self, **overrides)
        settings.validate()
        return settings

    def work_subject(self, tag: str) -> str:
        """The work-queue subject of ``tag``."""
        return f"{self.work_subject_prefix}.{tag}"

    def dlq_subject(self, tag: str) -> str:
        """The dead-letter subject of ``tag``."""
        return f"{self.dlq_subject_prefix}.{tag}"

    @property
    def workers_bucket_ttl_sec(self) -> float:
        """How long the workers bucket keeps a record after its last write: the liveness TTL
        plus the time a STOPPED or DISCONNECTED worker stays listed."""
        return self.workers_kv_ttl_sec + self.workers_retention_sec

    def consumer_name(self, tag: str) -> str:
        """The durable pull-consumer name shared by every worker serving ``tag``."""
        return f"{self.work_stream}_{tag}"


_FIELDS = {spec.name: spec for spec in dataclasses.fields(Settings)}


def env_var(field_name: str) -> str:
    """The environment variable behind a settings field."""
    return _FIELDS[field_name].metadata["env"]


def validate_tag(tag: str, source: str = "tag") -> str:
    """Return ``tag`` when it is a valid tag name; raise :class:`ConfigError` otherwise."""
    if not TAG_PATTERN.match(tag):
        raise ConfigError(source, tag, "a tag matching ^[A-Za-z0-9_-]+$ (no '.')")
    return tag
