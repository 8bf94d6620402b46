"""Names of streams, subjects and buckets unique to one test system, built one way.

Tests, benchmarks and plugin authors' systems share one nats-server; each system gets its own
work and DLQ streams, subject prefixes and KV buckets from :func:`unique_names`, so nothing one
writes is seen by another.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..config import INDEX_DIR_TEMPORARY, Settings, env_var

#: The settings that name NATS resources (what :func:`unique_names` fills in).
ISOLATED_FIELDS = (
    "work_stream",
    "work_subject_prefix",
    "dlq_stream",
    "dlq_subject_prefix",
    "runs_kv_bucket",
    "workers_kv_bucket",
    "worker_flags_kv_bucket",
    "auth_kv_bucket",
    "idempotency_kv_bucket",
    "spawn_kv_bucket",
    "schedules_kv_bucket",
    "schedule_workflows_kv_bucket",
    "leases_kv_bucket",
    "wheel_object_store_bucket",
    "wheel_history_kv_bucket",
    "plugin_registry_kv_bucket",
)
#: The DLQ stream size of test systems (the default is 512 MiB). JetStream reserves a stream's
#: max_bytes against the server's storage limit (75 % of the free disk): with the default, a
#: shared server runs out after about a hundred systems ("insufficient storage resources").
TEST_DLQ_MAX_BYTES = 16 * 1024 * 1024


def unique_names(suffix: str | None = None) -> dict[str, str]:
    """Settings field → a name of its own (``WORK_<suffix>``, ``t<suffix>.work``, …)."""
    suffix = suffix or uuid.uuid4().hex[:10]
    return {
        "work_stream": f"WORK_{suffix}",
        "work_subject_prefix": f"t{suffix}.work",
        "dlq_stream": f"DLQ_{suffix}",
        "dlq_subject_prefix": f"t{suffix}.dlq",
        "runs_kv_bucket": f"runs_{suffix}",
        "workers_kv_bucket": f"workers_{suffix}",
        "worker_flags_kv_bucket": f"wflags_{suffix}",
        "auth_kv_bucket": f"auth_{suffix}",
        "idempotency_kv_bucket": f"idem_{suffix}",
        "spawn_kv_bucket": f"spawn_{suffix}",
        "schedules_kv_bucket": f"sched_{suffix}",
        "schedule_workflows_kv_bucket": f"schedwf_{suffix}",
        "leases_kv_bucket": f"leases_{suffix}",
        "wheel_object_store_bucket": f"wheels_{suffix}",
        "wheel_history_kv_bucket": f"whist_{suffix}",
        "plugin_registry_kv_bucket": f"preg_{suffix}",
    }


def isolation_env(suffix: str | None = None) -> dict[str, str]:
    """``PYOCO_*`` names of streams, subjects and buckets unique to one system."""
    return {env_var(name): value for name, value in unique_names(suffix).items()}


def isolated_settings(nats_url: str, **overrides: Any) -> Settings:
    """Settings on ``nats_url`` whose streams, subjects and buckets are unique to one system
    (and whose DLQ stream is :data:`TEST_DLQ_MAX_BYTES`; whose gateway's run index is a
    temporary one, never in the user's state directory); ``overrides`` win."""
    values: dict[str, Any] = {
        "nats_url": nats_url,
        **unique_names(),
        "dlq_max_bytes": TEST_DLQ_MAX_BYTES,
        "index_dir": INDEX_DIR_TEMPORARY,
        **overrides,
    }
    return Settings(**values)
