"""The system endpoints of the OpenAPI document (health, readiness, workers, plugins, metrics,
this document; :mod:`..resources.system`) and their schemas."""

from __future__ import annotations

from typing import Any

from ...plugins import SOURCE_BUILTIN, SOURCE_ENTRY_POINT, SOURCE_OPTION
from ..worker_visibility.query import (
    SCOPES,
    STATE_ALIASES,
    WORKERS_LIMIT_DEFAULT,
    WORKERS_LIMIT_MAX,
)
from ..worker_visibility.resources import PATCH_MAX_BYTES
from ..workers import WORKER_STATES
from .shared import JSON, error_responses, flag_schema, json_response, query_parameter, ref


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    return {
        "Plugin": {
            "type": "object",
            "required": ["name", "source", "module", "hooks"],
            "properties": {
                "name": {"type": "string"},
                "source": {
                    "type": "string",
                    "enum": [SOURCE_BUILTIN, SOURCE_ENTRY_POINT, SOURCE_OPTION],
                },
                "module": {"type": "string"},
                "distribution": {"type": ["string", "null"]},
                "version": {"type": ["string", "null"]},
                "hooks": {"type": "array", "items": {"type": "string"}},
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
                "hidden": {
                    "type": "boolean",
                    "description": "an operator hid it (PATCH /workers/{worker_id})",
                },
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
        "WorkerHidden": {
            "type": "object",
            "required": ["worker_id", "hidden", "updated_at"],
            "properties": {
                "worker_id": {"type": "string"},
                "hidden": {"type": "boolean"},
                "updated_at": {"type": "number", "description": "epoch seconds of the change"},
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


def paths() -> dict[str, Any]:
    """This area's path items."""
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process is up (does not need NATS)",
                "responses": {
                    "200": json_response(
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
                    "200": json_response(ref("schemas", "Ready"), "ready to serve"),
                    **error_responses(503),
                },
            }
        },
        "/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "Workers and their states",
                "description": "IDLE, RUNNING, STOPPED (said so at shutdown) or DISCONNECTED "
                "(no heartbeat within PYOCO_WORKERS_KV_TTL_SEC). A stopped or disconnected "
                "worker stays listed for PYOCO_WORKERS_RETENTION_SEC. By default only active "
                "(RUNNING, IDLE) workers that are not hidden, at most 100, by worker id.",
                "parameters": [
                    query_parameter(
                        "scope",
                        {"type": "string", "enum": list(SCOPES)},
                        "active: RUNNING and IDLE workers (the default, unless state or "
                        "include_stopped is given); all: every state",
                    ),
                    query_parameter(
                        "state",
                        {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "enum": [*WORKER_STATES, *STATE_ALIASES, ""],
                            },
                        },
                        "only workers in these states (any case, repeatable or "
                        "comma-separated; STOPPED_GRACEFUL means STOPPED; an empty value is "
                        "ignored)",
                        explode=True,
                    ),
                    query_parameter(
                        "include_hidden",
                        flag_schema(default=False),
                        "true: also workers an operator has hidden",
                    ),
                    query_parameter(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": WORKERS_LIMIT_MAX,
                            "default": WORKERS_LIMIT_DEFAULT,
                        },
                        "how many workers at most",
                    ),
                    query_parameter(
                        "include_stopped",
                        flag_schema(default=True),
                        "false: leave STOPPED workers out",
                    ),
                ],
                "responses": {
                    "200": json_response(
                        {"type": "array", "items": ref("schemas", "Worker")},
                        "workers by id; [] when there are none",
                    ),
                    **error_responses(422, 503),
                },
            }
        },
        "/workers/{worker_id}": {
            "patch": {
                "operationId": "setWorkerHidden",
                "summary": "Hide a worker from the default list, or show it again",
                "description": "The flag is kept apart from the worker's own record, so its "
                "heartbeats and restarts never change it. Any valid API key may set it.",
                "parameters": [
                    {
                        "name": "worker_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["hidden"],
                                "properties": {"hidden": {"type": "boolean"}},
                                "description": f"at most {PATCH_MAX_BYTES} bytes",
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(ref("schemas", "WorkerHidden"), "the flag as set"),
                    "404": json_response(
                        ref("schemas", "Error"),
                        "no such worker (no record in the workers bucket): ERR-PYOCO-0032",
                    ),
                    **error_responses(413, 422, 503),
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
                    "200": json_response(
                        {"type": "array", "items": ref("schemas", "Plugin")},
                        "the loaded plugins, in registration order",
                    ),
                    "503": ref("responses", "Unavailable"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "pyoco_runs_total{status}, pyoco_runs_today_total{status} (runs "
                "updated on the server's local calendar day), pyoco_workers_alive_total, "
                "pyoco_workers{state}, pyoco_dlq_messages_total, pyoco_queue_depth{tag}, "
                "pyoco_queue_pending{tag}, pyoco_queue_in_flight{tag}, "
                "pyoco_queue_oldest_age_seconds{tag}, pyoco_queue_workers{tag}, "
                "pyoco_watchers_open",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **error_responses(503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": json_response({"type": "object"}, "OpenAPI 3.1 document")},
            }
        },
    }
