"""The dead-letter endpoints of the OpenAPI document (``/dlq``…, as :mod:`..resources.dlq`
serves them) and their schemas."""

from __future__ import annotations

from typing import Any

from ...config import TAG_PATTERN
from ..validation import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MAX_DLQ_REASON_CHARS,
    MAX_RUN_ID_CHARS,
    MAX_STREAM_SEQ,
)
from .shared import (
    error_responses,
    flag_schema,
    json_pattern,
    json_response,
    query_parameter,
    ref,
)


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    number = {"type": ["number", "null"]}
    text = {"type": ["string", "null"]}
    entry_properties = {
        "seq": {"type": "integer", "description": "the entry's sequence in the DLQ stream"},
        "timestamp": number,
        "reason": {
            "type": ["string", "null"],
            "description": "invalid_job, flow_not_found, policy_violation, execution_error, "
            "max_deliveries, lost, or a plugin's own; null for an unreadable message",
        },
        "error": {},
        "run_id": text,
        "flow_name": text,
        "tag": text,
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "worker_id": text,
        "num_delivered": {"type": ["integer", "null"]},
        "max_deliver": {"type": ["integer", "null"]},
        "attempt": {"type": ["integer", "null"]},
        "err_id": text,
        "tenant_id": text,
        "detected_by": {
            "type": ["string", "null"],
            "description": "'gateway' for lost / max_deliveries entries written by "
            "reconciliation; absent when a worker wrote the entry",
        },
    }
    return {
        "DeadLetterSummary": {
            "type": "object",
            "required": ["seq", "reason", "has_job"],
            "properties": {
                **entry_properties,
                "has_job": {"type": "boolean", "description": "the entry can be redriven"},
            },
        },
        "DeadLetter": {
            "type": "object",
            "required": ["seq", "dlq_subject"],
            "additionalProperties": True,
            "description": "the whole entry as stored (docs/worker.md, Failures)",
            "properties": {
                **entry_properties,
                "dlq_subject": {"type": "string"},
                "stored_at": number,
                "subject": {"type": ["string", "null"], "description": "the job's subject"},
                "stream_seq": {"type": ["integer", "null"]},
                "job": {
                    "type": "object",
                    "description": "the original job (YAML runs: with workflow_yaml)",
                },
                "payload": {"type": "string", "description": "preview of an invalid job"},
                "invalid": {"type": "boolean"},
            },
        },
        "Redriven": {
            "type": "object",
            "required": ["run_id", "status", "attempt", "new_run", "seq"],
            "properties": {
                "run_id": {"type": "string"},
                "status": {"const": "PENDING"},
                "attempt": {"type": "integer", "minimum": 1},
                "new_run": {"type": "boolean"},
                "seq": {"type": "integer"},
                "redriven_from": {
                    "type": ["string", "null"],
                    "description": "the run of the dead job",
                },
            },
        },
        "BulkRedrive": {
            "type": "object",
            "required": ["matched", "redriven", "skipped", "failed", "not_attempted", "results"],
            "properties": {
                "matched": {"type": "integer"},
                "redriven": {"type": "integer"},
                "skipped": {"type": "integer", "description": "refused (409/404/422)"},
                "failed": {"type": "integer", "description": "NATS failed; the batch stopped"},
                "not_attempted": {"type": "integer"},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["seq", "outcome"],
                        "properties": {
                            "seq": {"type": "integer"},
                            "run_id": text,
                            "outcome": {
                                "type": "string",
                                "enum": ["redriven", "skipped", "failed", "not_attempted"],
                            },
                            "attempt": {"type": "integer"},
                            "new_run": {"type": "boolean"},
                            "err_id": {"type": "string"},
                            "reason": text,
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
        "EndedAttempt": {
            "type": "object",
            "properties": {
                "attempt": {"type": "integer"},
                "status": {"type": "string"},
                "error": {},
                "worker_id": text,
                "start_time": number,
                "end_time": number,
                "dlq_seq": {"type": "integer"},
                "dlq_reason": text,
                "redriven_at": {"type": "number"},
            },
        },
    }


def paths() -> dict[str, Any]:
    """This area's path items."""
    error = ref("schemas", "Error")
    seq = {
        "name": "seq",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_STREAM_SEQ},
        "description": "the entry's seq",
    }
    not_found = json_response(error, "no such dead letter (or another tenant's): ERR-PYOCO-0028")
    refused = json_response(
        error,
        "redrive refused: ERR-PYOCO-0029 with 'reason' run_not_terminal, already_redriven, "
        "redrive_in_progress, no_job or run_missing",
    )
    new_run = query_parameter(
        "new_run",
        flag_schema(default=False),
        "true: queue the job as a fresh run instead of a new attempt of its run",
    )
    filters = [
        query_parameter(
            "tag",
            {"type": "string", "pattern": json_pattern(TAG_PATTERN)},
            "only entries of this tag",
        ),
        query_parameter(
            "reason",
            {"type": "string", "maxLength": MAX_DLQ_REASON_CHARS},
            "only entries with this reason",
        ),
        query_parameter(
            "run_id", {"type": "string", "maxLength": MAX_RUN_ID_CHARS}, "only entries of this run"
        ),
        query_parameter(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": LIST_LIMIT_MAX,
                "default": LIST_LIMIT_DEFAULT,
            },
            "how many entries at most",
        ),
        query_parameter(
            "before",
            {"type": "integer", "minimum": 1, "maximum": MAX_STREAM_SEQ},
            "only entries older than this seq: the Next-Cursor of a previous page",
        ),
    ]
    return {
        "/dlq": {
            "get": {
                "operationId": "listDeadLetters",
                "summary": "Dead letters, newest first",
                "description": "Read backwards from the DLQ stream's last sequence: the cost "
                "follows limit, not the DLQ size; with reason/run_id filters or tenancy, at "
                "most PYOCO_DLQ_LIST_SCAN_MAX sequences are examined per request.",
                "parameters": filters,
                "responses": {
                    "200": {
                        **json_response(
                            {"type": "array", "items": ref("schemas", "DeadLetterSummary")},
                            "entries without their job; [] when there are none",
                        ),
                        "headers": {
                            "Next-Cursor": {
                                "description": "present when older entries may follow (a full "
                                "page, or the scan cap was reached): pass it as before",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    **error_responses(422, 503),
                },
            }
        },
        "/dlq/redrive": {
            "post": {
                "operationId": "redriveDeadLetters",
                "summary": "Redrive the entries GET /dlq lists with the same parameters",
                "description": "One by one, newest first, at most limit; refused entries are "
                "skipped with their reason; a NATS outage stops the batch.",
                "parameters": [*filters, new_run],
                "responses": {
                    "200": json_response(ref("schemas", "BulkRedrive"), "what happened to each"),
                    **error_responses(422, 503),
                },
            }
        },
        "/dlq/{seq}": {
            "get": {
                "operationId": "getDeadLetter",
                "summary": "One dead letter with its original job",
                "parameters": [seq],
                "responses": {
                    "200": json_response(ref("schemas", "DeadLetter"), "the entry"),
                    "404": not_found,
                    **error_responses(422, 503),
                },
            },
            "delete": {
                "operationId": "deleteDeadLetter",
                "summary": "Remove a dead letter",
                "parameters": [seq],
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "properties": {
                                "seq": {"type": "integer"},
                                "deleted": {"const": True},
                            },
                        },
                        "removed",
                    ),
                    "404": not_found,
                    **error_responses(422, 503),
                },
            },
        },
        "/dlq/{seq}/redrive": {
            "post": {
                "operationId": "redriveDeadLetter",
                "summary": "Queue a dead job again",
                "description": "Default: a new attempt of its run (PENDING, attempt + 1, the "
                "ended attempt kept in attempts), refused unless the run is COMPLETED, FAILED "
                "or CANCELLED. new_run=true: a fresh run through the submit path. YAML jobs "
                "carry their YAML again (checked by the policy again: 422). The entry is "
                "deleted afterwards; a second redrive of it is refused (409).",
                "parameters": [seq, new_run],
                "responses": {
                    "200": json_response(ref("schemas", "Redriven"), "queued"),
                    "404": not_found,
                    "409": refused,
                    **error_responses(413, 422, 503),
                },
            }
        },
    }
