"""The system endpoints of the OpenAPI document (health, readiness, workers, plugins, metrics,
this document; :mod:`..resources.system`) and their schemas."""

from __future__ import annotations

from typing import Any

from ...plugins import SOURCE_BUILTIN, SOURCE_ENTRY_POINT, SOURCE_OPTION
from ..workers import WORKER_STATES
from .shared import error_responses, flag_schema, json_response, query_parameter, ref


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
                "worker stays listed for PYOCO_WORKERS_RETENTION_SEC.",
                "parameters": [
                    query_parameter(
                        "state",
                        {
                            "type": "array",
                            "items": {"type": "string", "enum": [*WORKER_STATES, ""]},
                        },
                        "only workers in these states (repeatable or comma-separated; an empty "
                        "value is ignored)",
                        explode=True,
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
