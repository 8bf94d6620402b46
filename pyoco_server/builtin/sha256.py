"""Built-in plugin ``sha256``: fingerprint of the uploaded workflow YAML in the snapshot."""

from __future__ import annotations

import hashlib
from typing import Any

from ..hookspecs import hookimpl


@hookimpl
def pyoco_enrich_snapshot(
    snapshot: dict[str, Any], job: dict[str, Any] | None, event: str
) -> dict[str, Any] | None:
    """Add ``workflow_yaml_sha256`` and ``workflow_yaml_bytes`` to snapshots of YAML runs.

    Uses the values the gateway computed into the job when present; otherwise hashes the job's
    ``workflow_yaml`` text. Runs without YAML get nothing.
    """
    if not job or not job.get("workflow_yaml"):
        return None
    digest, size = job.get("workflow_yaml_sha256"), job.get("workflow_yaml_bytes")
    if not digest or size is None:
        data = job["workflow_yaml"].encode("utf-8")
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
    return {"workflow_yaml_sha256": digest, "workflow_yaml_bytes": size}
