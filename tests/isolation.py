"""Per-test NATS resource names, so tests share one nats-server without interfering.

A plain module (not ``conftest``) so that test modules in any directory can import it.
"""

from __future__ import annotations

import uuid

from pyoco_server.config import Settings

#: The DLQ stream size of test resources (the default is 512 MiB).
TEST_DLQ_MAX_BYTES = 16 * 1024 * 1024


def isolated_settings(url: str, **overrides: object) -> Settings:
    """Settings whose streams, subjects and buckets are unique to one test."""
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "nats_url": url,
        "work_stream": f"WORK_{suffix}",
        "work_subject_prefix": f"t{suffix}.work",
        "dlq_stream": f"DLQ_{suffix}",
        "dlq_subject_prefix": f"t{suffix}.dlq",
        "runs_kv_bucket": f"runs_{suffix}",
        "workers_kv_bucket": f"workers_{suffix}",
        "auth_kv_bucket": f"auth_{suffix}",
        "idempotency_kv_bucket": f"idem_{suffix}",
        "spawn_kv_bucket": f"spawn_{suffix}",
        # JetStream reserves a stream's max_bytes against the server's storage limit (75 % of
        # the free disk): with the default 512 MiB per DLQ stream, a session server runs out
        # after about a hundred tests ("insufficient storage resources available").
        "dlq_max_bytes": TEST_DLQ_MAX_BYTES,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
