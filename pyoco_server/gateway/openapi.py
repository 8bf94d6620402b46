"""The OpenAPI 3.1 document of the gateway, written by hand as data.

Every route :func:`~pyoco_server.gateway.app.create_app` adds must appear here (a test checks
both directions). Add an endpoint by adding its path item to :func:`openapi_document`; error
responses reuse the shared ``components.responses``.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..model import RUN_STATUSES
from .dashboard import CONTENT_SECURITY_POLICY
from .validation import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MAX_FLOW_NAME_CHARS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_RUN_ID_SEARCH_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
)
from .workers import WORKER_STATES

JSON = "application/json"
TAG_REGEX = "^[A-Za-z0-9_-]+$"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
        422: "Invalid",
        503: "Unavailable",
    }
    responses = {str(status): _ref("responses", names[status]) for status in statuses}
    responses["default"] = _ref("responses", "Unexpected")
    return responses


def _schemas() -> dict[str, Any]:
    tag = {"type": "string", "pattern": TAG_REGEX, "maxLength": MAX_TAG_CHARS}
    nullable_number = {"type": ["number", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["detail", "err_id", "msg_id"],
            "properties": {
                "detail": {"type": "string", "description": "short human text"},
                "err_id": {"type": "string", "pattern": "^ERR-PYOCO-[0-9]{4}$"},
                "msg_id": {"type": "string", "pattern": "^MSG-PYOCO-[0-9]{4}$"},
                "errors": {
                    "type": "array",
                    "description": "the offending fields of a validation error",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
                "reason": {
                    "type": "string",
                    "description": "policy reason code of a rejected workflow YAML "
                    "(forbidden_key, unknown_key, callable_not_allowed, env_not_allowed, …)",
                },
                "key": {
                    "type": ["string", "null"],
                    "description": "the offending key, callable or environment variable",
                },
            },
        },
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
        "Plugin": {
            "type": "object",
            "required": ["name", "source", "module", "hooks"],
            "properties": {
                "name": {"type": "string"},
                "source": {
                    "type": "string",
                    "enum": ["built-in", "entry point", "--plugins"],
                },
                "module": {"type": "string"},
                "distribution": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "hooks": {"type": "array", "items": {"type": "string"}},
            },
        },
        "DashboardConfig": {
            "type": "object",
            "required": ["auth_mode", "api_key_header", "version"],
            "properties": {
                "auth_mode": {"type": "string", "enum": ["none", "api_key"]},
                "api_key_header": {"type": "string"},
                "version": {"type": "string"},
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
                    "items": _ref("schemas", "EndedAttempt"),
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
        "Worker": {
            "type": "object",
            "required": ["worker_id", "state", "tags", "heartbeat_at", "current_run_id", "alive"],
            "additionalProperties": True,
            "properties": {
                "worker_id": {"type": "string"},
                "state": {
                    "type": "string",
                    "enum": list(WORKER_STATES),
                    "description": "DISCONNECTED: no heartbeat within PYOCO_WORKERS_KV_TTL_SEC; "
                    "DISCONNECTED and STOPPED workers stay listed for "
                    "PYOCO_WORKERS_RETENTION_SEC",
                },
                "alive": {"type": "boolean"},
                "heartbeat_age_sec": {
                    "type": ["number", "null"],
                    "description": "seconds since the last heartbeat",
                },
                "tags": {"type": "array", "items": {"type": "string"}},
                "heartbeat_at": {"description": "the worker's last heartbeat"},
                "current_run_id": {"type": ["string", "null"]},
                "instance_id": {"type": "string"},
                "started_at": {},
                "hostname": {"type": "string"},
                "pid": {"type": "integer"},
                "concurrency": {"type": "integer"},
            },
        },
        "Ready": {
            "type": "object",
            "required": ["status", "nats", "runs_index"],
            "properties": {
                "status": {"type": "string", "enum": ["ready"]},
                "nats": {"type": "boolean"},
                "runs_index": {"type": "boolean"},
            },
        },
    }


def _responses() -> dict[str, Any]:
    error = _ref("schemas", "Error")
    return {
        "NotFound": _json(error, "no such run (or it belongs to another tenant): ERR-PYOCO-0005"),
        "Conflict": _json(
            error,
            "a request with the same Idempotency-Key is still in progress: ERR-PYOCO-0021",
        ),
        "TooLarge": _json(
            error,
            "request body over PYOCO_HTTP_MAX_BODY_BYTES (ERR-PYOCO-0019) or workflow YAML over "
            "PYOCO_WORKFLOW_YAML_MAX_BYTES (ERR-PYOCO-0016)",
        ),
        "Invalid": _json(
            error,
            "invalid request or workflow YAML: ERR-PYOCO-0002; 'errors' names the fields, "
            "'reason' and 'key' explain a policy rejection",
        ),
        "Unavailable": _json(error, "NATS unavailable: ERR-PYOCO-0003 (retry later)"),
        "Unexpected": _json(
            error,
            "unknown path or method (404/405, ERR-PYOCO-0020) or an internal error "
            "(500, ERR-PYOCO-0022; details are only in the gateway's log)",
        ),
    }


def _parameters() -> dict[str, Any]:
    return {
        "RunId": {
            "name": "run_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
        },
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "a repeated request with the same key (per tenant, remembered for "
            "PYOCO_IDEMPOTENCY_TTL_SEC) returns the first run instead of creating another; the "
            "reply then has the header Idempotent-Replayed: true",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS},
        },
    }


def _flag(default: bool) -> dict[str, Any]:
    """A boolean query parameter: true/false, or 1/0, yes/no, on/off (empty: false)."""
    return {
        "anyOf": [
            {"type": "boolean"},
            {"type": "string", "enum": ["1", "0", "yes", "no", "on", "off", ""]},
        ],
        "default": default,
    }


def _query(name: str, schema: dict[str, Any], description: str, explode: bool = False):
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    parameter["description"] = description
    if explode:
        parameter.update(style="form", explode=True)
    return parameter


def _paths() -> dict[str, Any]:
    run_id = _ref("parameters", "RunId")
    idempotency = _ref("parameters", "IdempotencyKey")
    submitted = _json(_ref("schemas", "RunSubmitted"), "the run was stored and queued")
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process is up (does not need NATS)",
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"status": {"const": "ok"}}}, "alive"
                    )
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: NATS answers and the run index is loaded",
                "responses": {
                    "200": _json(_ref("schemas", "Ready"), "ready to serve"),
                    **_errors(503),
                },
            }
        },
        "/runs": {
            "post": {
                "operationId": "submitRun",
                "summary": "Submit a run of a named flow",
                "parameters": [idempotency],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("schemas", "RunRequest")}},
                },
                "responses": {"200": submitted, **_errors(409, 413, 422, 503)},
            },
            "get": {
                "operationId": "listRuns",
                "summary": "List runs, most recently updated first",
                "parameters": [
                    _query(
                        "status",
                        {"type": "string", "enum": list(RUN_STATUSES)},
                        "only runs in this status",
                    ),
                    _query("flow", {"type": "string"}, "only runs of this flow name"),
                    _query(
                        "tag",
                        {"type": "string", "pattern": TAG_REGEX},
                        "only runs with this tag (routing tag or one of tags)",
                    ),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": LIST_LIMIT_MAX,
                            "default": LIST_LIMIT_DEFAULT,
                        },
                        "how many runs at most",
                    ),
                    _query(
                        "q",
                        {"type": "string", "maxLength": MAX_RUN_ID_SEARCH_CHARS},
                        "only runs whose id contains this text (case-insensitive)",
                    ),
                    _query(
                        "cursor",
                        {"type": "string", "pattern": "^[1-9][0-9]{0,19}$"},
                        "continue after a previous page: the value of its Next-Cursor header "
                        "(the same filters apply)",
                    ),
                    _query(
                        "include",
                        {"type": "string", "enum": ["full", ""]},
                        "full: whole snapshots instead of summaries (an empty value is ignored)",
                    ),
                ],
                "responses": {
                    "200": {
                        **_json(
                            {
                                "type": "array",
                                "items": {
                                    "anyOf": [
                                        _ref("schemas", "RunSummary"),
                                        _ref("schemas", "RunSnapshot"),
                                    ]
                                },
                            },
                            "summaries (snapshots with include=full); [] when there are none",
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
                    **_errors(422, 503),
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
                    "200": _json(_ref("schemas", "RunCounts"), "the counts"),
                    **_errors(503),
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
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["workflow", "flow_name"],
                                "properties": {
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
                                    "tag": {"type": "string", "pattern": TAG_REGEX},
                                },
                            }
                        }
                    },
                },
                "responses": {"200": submitted, **_errors(409, 413, 422, 503)},
            }
        },
        "/runs/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run's snapshot",
                "parameters": [
                    run_id,
                    _query(
                        "include",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": ["records", "full", "all", ""]},
                        },
                        "records: add task_records; full/all: the snapshot as stored "
                        "(repeatable or comma-separated; an empty value is ignored)",
                        explode=True,
                    ),
                ],
                "responses": {
                    "200": _json(_ref("schemas", "RunSnapshot"), "the run"),
                    **_errors(404, 422, 503),
                },
            }
        },
        "/runs/{run_id}/tasks": {
            "get": {
                "operationId": "getRunTasks",
                "summary": "One run's task states and records",
                "parameters": [run_id],
                "responses": {
                    "200": _json(_ref("schemas", "RunTasks"), "the run's tasks"),
                    **_errors(404, 503),
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
                    "200": _json(
                        _ref("schemas", "RunSnapshot"),
                        "the run's snapshot after the request (without task_records)",
                    ),
                    **_errors(404, 503),
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
                    _query(
                        "include",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": ["records", "full", "all", ""]},
                        },
                        "as on GET /runs/{run_id}: records adds task_records to every snapshot",
                        explode=True,
                    ),
                    _query(
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
                        "schema": {"type": "string", "pattern": "^([0-9]{1,20})?$"},
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
                    **_errors(404, 422, 503),
                },
            }
        },
        "/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "Workers and their states",
                "description": "IDLE, RUNNING, STOPPED (said so at shutdown) or DISCONNECTED "
                "(no heartbeat within PYOCO_WORKERS_KV_TTL_SEC). A stopped or disconnected "
                "worker stays listed for PYOCO_WORKERS_RETENTION_SEC.",
                "parameters": [
                    _query(
                        "state",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": [*WORKER_STATES, ""]},
                        },
                        "only workers in these states (repeatable or comma-separated; an empty "
                        "value is ignored)",
                        explode=True,
                    ),
                    _query(
                        "include_stopped",
                        _flag(default=True),
                        "false: leave STOPPED workers out",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _ref("schemas", "Worker")},
                        "workers by id; [] when there are none",
                    ),
                    **_errors(422, 503),
                },
            }
        },
        "/plugins": {
            "get": {
                "operationId": "listPlugins",
                "summary": "The plugins this gateway loaded",
                "description": "As `pyoco-server plugins --json` prints them. The list "
                "itself needs no NATS; with authentication on, checking the key does (503).",
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _ref("schemas", "Plugin")},
                        "the loaded plugins, in registration order",
                    ),
                    "503": _ref("responses", "Unavailable"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "pyoco_runs_total{status}, pyoco_workers_alive_total, "
                "pyoco_workers{state}, pyoco_dlq_messages_total, pyoco_queue_depth{tag}, "
                "pyoco_queue_pending{tag}, pyoco_queue_in_flight{tag}, "
                "pyoco_queue_oldest_age_seconds{tag}, pyoco_queue_workers{tag}, "
                "pyoco_watchers_open",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
        "/": {
            "get": {
                "operationId": "dashboard",
                "summary": "The operators' dashboard (HTML)",
                "description": "Served without an API key (it holds no data; the page asks "
                "for a key when an API call needs one). Header Content-Security-Policy: "
                + CONTENT_SECURITY_POLICY,
                "responses": {
                    "200": {
                        "description": "the dashboard page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "not modified (If-None-Match)"},
                },
            }
        },
        "/ui/config.json": {
            "get": {
                "operationId": "dashboardConfig",
                "summary": "What the dashboard needs before its first API call",
                "description": "The auth mode and the API key header name "
                "(PYOCO_HTTP_API_KEY_HEADER). Served without an API key.",
                "responses": {
                    "200": _json(_ref("schemas", "DashboardConfig"), "the configuration")
                },
            }
        },
        "/ui/{name}": {
            "get": {
                "operationId": "dashboardAsset",
                "summary": "A static file of the dashboard (JavaScript module, CSS, icon)",
                "description": "Only the files shipped with pyoco-server; those are served "
                "without an API key, any other name needs one like every route.",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {
                            "text/javascript": {"schema": {"type": "string"}},
                            "text/css": {"schema": {"type": "string"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    },
                    "304": {"description": "not modified (If-None-Match)"},
                    "404": _ref("responses", "Unexpected"),
                    "503": _ref("responses", "Unavailable"),
                },
            }
        },
    }


def _dlq_schemas() -> dict[str, Any]:
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
            "description": "the whole entry as stored (contract §7.2 fields)",
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


def _dlq_paths() -> dict[str, Any]:
    error = _ref("schemas", "Error")
    seq = {
        "name": "seq",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
        "description": "the entry's seq",
    }
    not_found = _json(error, "no such dead letter (or another tenant's): ERR-PYOCO-0028")
    refused = _json(
        error,
        "redrive refused: ERR-PYOCO-0029 with 'reason' run_not_terminal, already_redriven, "
        "redrive_in_progress, no_job or run_missing",
    )
    new_run = _query(
        "new_run",
        _flag(default=False),
        "true: queue the job as a fresh run instead of a new attempt of its run",
    )
    filters = [
        _query("tag", {"type": "string", "pattern": TAG_REGEX}, "only entries of this tag"),
        _query("reason", {"type": "string", "maxLength": 64}, "only entries with this reason"),
        _query("run_id", {"type": "string", "maxLength": 128}, "only entries of this run"),
        _query(
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": LIST_LIMIT_MAX,
                "default": LIST_LIMIT_DEFAULT,
            },
            "how many entries at most",
        ),
        _query(
            "before",
            {"type": "integer", "minimum": 1},
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
                        **_json(
                            {"type": "array", "items": _ref("schemas", "DeadLetterSummary")},
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
                    **_errors(422, 503),
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
                    "200": _json(_ref("schemas", "BulkRedrive"), "what happened to each"),
                    **_errors(422, 503),
                },
            }
        },
        "/dlq/{seq}": {
            "get": {
                "operationId": "getDeadLetter",
                "summary": "One dead letter with its original job",
                "parameters": [seq],
                "responses": {
                    "200": _json(_ref("schemas", "DeadLetter"), "the entry"),
                    "404": not_found,
                    **_errors(422, 503),
                },
            },
            "delete": {
                "operationId": "deleteDeadLetter",
                "summary": "Remove a dead letter",
                "parameters": [seq],
                "responses": {
                    "200": _json(
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
                    **_errors(422, 503),
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
                    "200": _json(_ref("schemas", "Redriven"), "queued"),
                    "404": not_found,
                    "409": refused,
                    **_errors(413, 422, 503),
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pyoco-server",
            "version": __version__,
            "description": "Submit pyoco flows over HTTP, run them on workers, follow them "
            "to the end. Every error is JSON {detail, err_id, msg_id}.",
        },
        "paths": {**_paths(), **_dlq_paths()},
        "components": {
            "schemas": {**_schemas(), **_dlq_schemas()},
            "responses": _responses(),
            "parameters": _parameters(),
        },
    }
