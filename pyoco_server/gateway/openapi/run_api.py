"""The run endpoints of the OpenAPI document (``/runs``…, as :mod:`..resources.runs` serves
them) and their schemas."""

from __future__ import annotations

from typing import Any

from ...model import RUN_STATUSES
from ..run_delta.cursor import MAX_CURSOR_CHARS
from ..run_delta.listing import MAX_SHA256_CHARS
from ..run_view import RUN_INCLUDES
from ..validation import (
    CURSOR_PATTERN,
    LIST_INCLUDES,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MAX_FLOW_NAME_CHARS,
    MAX_RUN_ID_SEARCH_CHARS,
    MAX_TAGS,
)
from ..watch import REVISION_PATTERN
from .children_api import TREE_PROPERTIES, parent_parameter
from .shared import (
    JSON,
    error_responses,
    form_body,
    json_pattern,
    json_response,
    query_parameter,
    ref,
    tag_schema,
)


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    tag = tag_schema()
    nullable_number = {"type": ["number", "null"]}
    return {
        "RunRequest": {
            "type": "object",
            "required": ["flow_name"],
            "properties": {
                "flow_name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_FLOW_NAME_CHARS,
                },
                "params": {
                    "type": ["object", "null"],
                    "default": {},
                    "description": "null or absent: {}",
                },
                "tag": {
                    **tag,
                    "type": ["string", "null"],
                    "description": "routing tag (job subject pyoco.work.<tag>); null or "
                    "absent: the first of tags, else PYOCO_DEFAULT_TAG",
                },
                "tags": {
                    "type": ["array", "null"],
                    "items": tag,
                    "maxItems": MAX_TAGS,
                    "description": "null or absent: [tag]",
                },
            },
        },
        "RunSubmitted": {
            "type": "object",
            "required": ["run_id", "status"],
            "properties": {
                "run_id": {"type": "string", "format": "uuid"},
                "status": {
                    "type": "string",
                    "enum": list(RUN_STATUSES),
                    "description": "PENDING for a new run; the run's current status when an "
                    "Idempotency-Key replays an earlier submit",
                },
            },
        },
        "RunSummary": {
            "type": "object",
            "required": ["run_id", "flow_name", "status", "updated_at"],
            "properties": {
                "run_id": {"type": "string"},
                "flow_name": {"type": "string"},
                "tag": {"type": ["string", "null"]},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "status": {"type": "string", "enum": list(RUN_STATUSES)},
                "updated_at": {"type": "number", "description": "epoch seconds"},
                "heartbeat_at": nullable_number,
                "worker_id": {"type": ["string", "null"]},
                "error": {"description": "error of a failed run (trimmed to 1 KiB in lists)"},
                "submitted_at": nullable_number,
                "start_time": nullable_number,
                "end_time": nullable_number,
                "schedule_id": {
                    "type": ["string", "null"],
                    "description": "the schedule that created the run",
                },
                "workflow_yaml_sha256": {
                    "type": ["string", "null"],
                    "description": "SHA-256 of the workflow file (YAML runs)",
                },
            },
        },
        "RunDeltaPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "anyOf": [ref("schemas", "RunSummary"), ref("schemas", "RunSnapshot")]
                    },
                    "description": "newest updated_at first",
                },
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "pass as cursor for the next page; null: no more runs",
                },
            },
        },
        "RunCounts": {
            "type": "object",
            "required": ["total", "by_status"],
            "properties": {
                "total": {"type": "integer", "minimum": 0},
                "by_status": {
                    "type": "object",
                    "description": "every run status, zeros included",
                    "properties": {
                        status: {"type": "integer", "minimum": 0} for status in RUN_STATUSES
                    },
                    "required": list(RUN_STATUSES),
                },
            },
        },
        "RunActivity": {
            "type": "object",
            "required": ["window", "step_sec", "start", "minutes", "finished", "queue_depth"],
            "properties": {
                "window": {"type": "string", "enum": ["hour", "day"]},
                "step_sec": {"type": "integer", "const": 60},
                "start": {
                    "type": "integer",
                    "description": "the first minute of the window (epoch seconds); entry i "
                    "of every series is the minute starting at start + 60 * i",
                },
                "minutes": {"type": "integer", "description": "entries per series (60 or 1440)"},
                "finished": {
                    "type": "object",
                    "description": "per terminal status, the caller's runs that reached it in "
                    "each minute",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0},
                    },
                },
                "queue_depth": {
                    "type": "object",
                    "description": "per tag, the jobs waiting at the minute's last sample "
                    "(null: no sample that minute)",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": ["integer", "null"], "minimum": 0},
                    },
                },
            },
        },
        "RunSnapshot": {
            "type": "object",
            "required": ["run_id", "flow_name", "status", "params", "tasks", "updated_at"],
            "additionalProperties": True,
            "description": "the run's snapshot as stored in KV, plus whatever "
            "pyoco_enrich_snapshot plugins add (e.g. workflow_yaml_sha256)",
            "properties": {
                "run_id": {"type": "string"},
                "flow_name": {"type": "string"},
                "status": {"type": "string", "enum": list(RUN_STATUSES)},
                "params": {"type": "object"},
                "tag": {"type": ["string", "null"]},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "tasks": {"type": "object", "additionalProperties": {"type": "string"}},
                "task_records": {
                    "type": "object",
                    "description": "only with include=records|full|all",
                },
                "task_records_truncated": {"type": "boolean"},
                "worker_id": {"type": ["string", "null"]},
                "heartbeat_at": nullable_number,
                "updated_at": {"type": "number"},
                "start_time": nullable_number,
                "end_time": nullable_number,
                "error": {},
                "tenant_id": {"type": ["string", "null"]},
                **TREE_PROPERTIES,
                "api_key_id": {"type": ["string", "null"]},
                "worker_alive": {
                    "type": "boolean",
                    "description": "present when the run has a worker",
                },
                "worker_heartbeat_at": {"description": "the worker's last heartbeat"},
                "worker_tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "cancel_requested_at": {
                    "type": "number",
                    "description": "when a cancel was first requested (epoch seconds)",
                },
                "cancel_requested_by": {
                    "type": "string",
                    "description": "the API key id that requested the cancel (auth on)",
                },
                "attempt": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1, plus one per redrive (POST /dlq/{seq}/redrive)",
                },
                "attempts": {
                    "type": "array",
                    "description": "the ended attempts before a redrive, oldest first",
                    "items": ref("schemas", "EndedAttempt"),
                },
                "job_stream_seq": {
                    "type": ["integer", "null"],
                    "description": "work-stream sequence of the job the worker claimed",
                },
                "num_delivered": {
                    "type": ["integer", "null"],
                    "description": "delivery count of the job when the worker claimed it",
                },
                "queue": {
                    "type": "object",
                    "description": "PENDING runs only: the run's tag and how many live workers "
                    "serve it; 'note' when none does (the run waits, it is not failed)",
                    "required": ["tag", "workers"],
                    "properties": {
                        "tag": {"type": "string"},
                        "workers": {"type": "integer", "minimum": 0},
                        "note": {"type": "string"},
                    },
                },
            },
        },
        "RunTasks": {
            "type": "object",
            "required": [
                "run_id",
                "flow_name",
                "status",
                "tasks",
                "task_records",
                "task_records_truncated",
            ],
            "properties": {
                "run_id": {"type": "string"},
                "flow_name": {"type": "string"},
                "status": {"type": "string", "enum": list(RUN_STATUSES)},
                "tasks": {"type": "object", "additionalProperties": {"type": "string"}},
                "task_records": {"type": "object"},
                "task_records_truncated": {"type": "boolean"},
            },
        },
    }


def paths() -> dict[str, Any]:
    """This area's path items."""
    run_id = ref("parameters", "RunId")
    idempotency = ref("parameters", "IdempotencyKey")
    submitted = json_response(ref("schemas", "RunSubmitted"), "the run was stored and queued")
    return {
        "/runs": {
            "post": {
                "operationId": "submitRun",
                "summary": "Submit a run of a named flow",
                "parameters": [idempotency],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("schemas", "RunRequest")}},
                },
                "responses": {"200": submitted, **error_responses(409, 413, 422, 503)},
            },
            "get": {
                "operationId": "listRuns",
                "summary": "List runs, most recently updated first",
                "parameters": [
                    query_parameter(
                        "status",
                        {"type": "string", "enum": list(RUN_STATUSES)},
                        "only runs in this status",
                    ),
                    query_parameter(
                        "flow",
                        {"type": "string", "maxLength": MAX_FLOW_NAME_CHARS},
                        "only runs of this flow name",
                    ),
                    query_parameter(
                        "tag",
                        tag_schema(),
                        "only runs with this tag (routing tag or one of tags)",
                    ),
                    query_parameter(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": LIST_LIMIT_MAX,
                            "default": LIST_LIMIT_DEFAULT,
                        },
                        "how many runs at most",
                    ),
                    parent_parameter(),
                    query_parameter(
                        "q",
                        {"type": "string", "maxLength": MAX_RUN_ID_SEARCH_CHARS},
                        "only runs whose id contains this text (case-insensitive)",
                    ),
                    query_parameter(
                        "schedule_id",
                        {"type": "string"},
                        "only the runs this schedule created",
                    ),
                    query_parameter(
                        "cursor",
                        {
                            "anyOf": [
                                {"type": "string", "pattern": json_pattern(CURSOR_PATTERN)},
                                {
                                    "type": "string",
                                    "pattern": "^[A-Za-z0-9_-]*$",
                                    "maxLength": MAX_CURSOR_CHARS,
                                },
                            ]
                        },
                        "continue after a previous page (the same filters apply): the "
                        "Next-Cursor header of a plain listing (digits), or the next_cursor of "
                        "a delta page (a token; any other token is a 422). A token, or an "
                        "empty value, makes the answer a delta page",
                    ),
                    query_parameter(
                        "updated_after",
                        {"type": "number"},
                        "only runs whose updated_at is strictly greater (epoch seconds); "
                        "makes the answer a delta page",
                    ),
                    query_parameter(
                        "workflow_yaml_sha256",
                        {"type": "string", "maxLength": MAX_SHA256_CHARS},
                        "only runs of the workflow file with this SHA-256 (any case); makes "
                        "the answer a delta page",
                    ),
                    query_parameter(
                        "include",
                        {"type": "string", "enum": [*LIST_INCLUDES, ""]},
                        "full: whole snapshots instead of summaries (an empty value is ignored)",
                    ),
                ],
                "responses": {
                    "200": {
                        **json_response(
                            {
                                "anyOf": [
                                    {
                                        "type": "array",
                                        "items": {
                                            "anyOf": [
                                                ref("schemas", "RunSummary"),
                                                ref("schemas", "RunSnapshot"),
                                            ]
                                        },
                                    },
                                    ref("schemas", "RunDeltaPage"),
                                ]
                            },
                            "summaries (snapshots with include=full), [] when there are none; "
                            "a delta page {items, next_cursor} with updated_after, "
                            "workflow_yaml_sha256 or a delta cursor",
                        ),
                        "headers": {
                            "Next-Cursor": {
                                "description": "present when the page is full: pass it as "
                                "cursor to list the runs after this page (runs updated "
                                "meanwhile move to the first page)",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    **error_responses(422, 503),
                },
            },
        },
        "/runs/counts": {
            "get": {
                "operationId": "countRuns",
                "summary": "How many of the caller's runs are stored, in total and by status",
                "description": "From counters kept on every write: constant cost, whatever the "
                "number of runs. With authentication on, only the caller's tenant's runs.",
                "responses": {
                    "200": json_response(ref("schemas", "RunCounts"), "the counts"),
                    **error_responses(503),
                },
            }
        },
        "/runs/activity": {
            "get": {
                "operationId": "runActivity",
                "summary": "Runs finished per minute by status, and queue depth per tag",
                "description": "The figures of the dashboard's charts, for the last hour or "
                "day. Finished runs are counted by the run index as it applies terminal writes "
                "(with authentication on, the caller's tenant's only); queue depths are sampled "
                "by the gateway.",
                "parameters": [
                    query_parameter(
                        "window",
                        {"type": "string", "enum": ["hour", "day"], "default": "hour"},
                        "the time window",
                    ),
                ],
                "responses": {
                    "200": json_response(ref("schemas", "RunActivity"), "the figures"),
                    **error_responses(422, 503),
                },
            }
        },
        "/runs/yaml": {
            "post": {
                "operationId": "submitWorkflowYaml",
                "summary": "Submit a run of an uploaded single-flow flow.yaml",
                "description": "The YAML is parsed safely and checked by every "
                "pyoco_check_workflow_yaml hook before anything is stored. Params come from "
                "flow.defaults.",
                "parameters": [idempotency],
                "requestBody": form_body(
                    ["workflow", "flow_name"],
                    {
                        "workflow": {
                            "type": "string",
                            "contentMediaType": "application/yaml",
                            "description": "the flow.yaml file",
                        },
                        "flow_name": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_FLOW_NAME_CHARS,
                        },
                        "tag": tag_schema(),
                    },
                ),
                "responses": {"200": submitted, **error_responses(409, 413, 422, 503)},
            }
        },
        "/runs/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run's snapshot",
                "parameters": [
                    run_id,
                    query_parameter(
                        "include",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": [*RUN_INCLUDES, ""]},
                        },
                        "records: add task_records; full/all: the snapshot as stored "
                        "(repeatable or comma-separated; an empty value is ignored)",
                        explode=True,
                    ),
                ],
                "responses": {
                    "200": json_response(ref("schemas", "RunSnapshot"), "the run"),
                    **error_responses(404, 422, 503),
                },
            }
        },
        "/runs/{run_id}/tasks": {
            "get": {
                "operationId": "getRunTasks",
                "summary": "One run's task states and records",
                "parameters": [run_id],
                "responses": {
                    "200": json_response(ref("schemas", "RunTasks"), "the run's tasks"),
                    **error_responses(404, 503),
                },
            }
        },
        "/runs/{run_id}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "summary": "Cancel a run (idempotent)",
                "description": "Recorded with compare-and-set against the worker's writes, so a "
                "cancel is never lost and a terminal run is never changed. PENDING becomes "
                "CANCELLED at once (end_time, cancel_requested_at, and cancel_requested_by = "
                "the caller's API key id when authentication is on); its queued job is "
                "acknowledged without executing when a worker takes it. RUNNING becomes "
                "CANCELLING: its worker notices within about PYOCO_RUN_HEARTBEAT_INTERVAL_SEC, "
                "cancels the flow through pyoco (tasks not started become CANCELLED) and writes "
                "CANCELLED, or COMPLETED when every task had already succeeded; a task that "
                "ignores the cancel is stopped hard after PYOCO_CANCEL_GRACE_PERIOD_SEC. "
                "CANCELLING and terminal runs are answered unchanged. No request body.",
                "parameters": [run_id],
                "responses": {
                    "200": json_response(
                        ref("schemas", "RunSnapshot"),
                        "the run's snapshot after the request (without task_records)",
                    ),
                    **error_responses(404, 503),
                },
            }
        },
        "/runs/{run_id}/watch": {
            "get": {
                "operationId": "watchRun",
                "summary": "Follow a run live (server-sent events) until it ends",
                "description": "text/event-stream, pushed by a JetStream KV watch on the run. "
                "Events: `snapshot` (id = the KV revision, data = the run as GET "
                "/runs/{run_id} shows it; the first is the current snapshot, then one per "
                "change; the stream ends after the terminal one), `heartbeat` (data {ts}, no "
                "id) after PYOCO_WATCH_HEARTBEAT_INTERVAL_SEC without a change, `timeout` "
                "(timeout_sec passed; the stream ends), `deleted` (the run was removed; the "
                "stream ends), `error` (NATS failed after the stream started: the error JSON "
                "shape; reconnect), `closing` (the gateway is shutting down; the stream ends). "
                "Reconnect with Last-Event-ID to resume without repeats.",
                "parameters": [
                    run_id,
                    query_parameter(
                        "include",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": [*RUN_INCLUDES, ""]},
                        },
                        "as on GET /runs/{run_id}: records adds task_records to every snapshot",
                        explode=True,
                    ),
                    query_parameter(
                        "timeout_sec",
                        {"type": "number", "exclusiveMinimum": 0},
                        "end the stream (event timeout) after this many seconds; values above "
                        "PYOCO_WATCH_MAX_SEC (3600) are lowered to it, which is also the default",
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "the id of the last event the client received: only "
                        "snapshots with a higher revision are sent (an empty stream when that "
                        "was the terminal snapshot); an empty value is ignored",
                        "schema": {
                            "type": "string",
                            "pattern": json_pattern(REVISION_PATTERN, optional=True),
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {
                            "text/event-stream": {
                                # OpenAPI 3.1 (no itemSchema): the schema describes one event.
                                "schema": {
                                    "type": "object",
                                    "required": ["event", "data"],
                                    "properties": {
                                        "event": {
                                            "type": "string",
                                            "enum": [
                                                "snapshot",
                                                "heartbeat",
                                                "timeout",
                                                "deleted",
                                                "error",
                                                "closing",
                                            ],
                                        },
                                        "id": {
                                            "type": "string",
                                            "description": "the KV revision (snapshot events)",
                                        },
                                        "data": {
                                            "type": "string",
                                            "description": "a JSON document",
                                        },
                                    },
                                },
                                "example": 'event: snapshot\nid: 42\ndata: {"run_id": '
                                '"…", "status": "RUNNING", …}\n\n',
                            }
                        },
                    },
                    **error_responses(404, 422, 503),
                },
            }
        },
    }
