"""The schedule endpoints of the OpenAPI document (``/schedules``…, as
:mod:`..schedules.resources` serves them) and their schemas."""

from __future__ import annotations

from typing import Any

from ..schedules.resources import LIST_LIMIT_MAX, MAX_BACKFILL_SLOTS
from ..schedules.spec import (
    CATCHUP_POLICIES,
    CATCHUP_WINDOW_MAX,
    CATCHUP_WINDOW_MIN,
    MAX_CATCHUP_LIMIT,
    MAX_JITTER_SEC,
    OVERLAP_POLICIES,
)
from ..validation import MAX_FLOW_NAME_CHARS
from .shared import error_responses, form_body, json_response, query_parameter, ref, tag_schema

#: A time as the schedule endpoints accept it.
INSTANT = {
    "anyOf": [
        {"type": "string", "description": "ISO 8601 date-time with a UTC offset (Z accepted)"},
        {"type": "number", "minimum": 0, "description": "epoch seconds"},
    ]
}
STATUSES = ["ACTIVE", "PAUSED", "COMPLETED"]


def _policies() -> dict[str, Any]:
    return {
        "catchup": {"type": "string", "enum": list(CATCHUP_POLICIES), "default": "latest"},
        "catchup_window_sec": {
            "type": "number",
            "minimum": CATCHUP_WINDOW_MIN,
            "maximum": CATCHUP_WINDOW_MAX,
            "default": 86400,
        },
        "max_catchup": {"type": "integer", "minimum": 1, "maximum": MAX_CATCHUP_LIMIT},
        "overlap": {"type": "string", "enum": list(OVERLAP_POLICIES), "default": "allow"},
        "jitter_sec": {"type": "number", "minimum": 0, "maximum": MAX_JITTER_SEC},
    }


def _trigger() -> dict[str, Any]:
    return {
        "run_at": {**INSTANT, "description": "one-shot: fire once at this time"},
        "interval_seconds": {
            "type": "number",
            "description": "fire every N seconds (at least PYOCO_SCHEDULE_MIN_INTERVAL_SEC)",
        },
        "start_at": {**INSTANT, "description": "with interval_seconds: the first slot"},
        "cron": {"type": "string", "description": "5 or 6 cron fields"},
        "timezone": {"type": "string", "description": "IANA time zone of cron (default UTC)"},
        "trigger": {
            "type": "object",
            "required": ["kind"],
            "properties": {"kind": {"type": "string"}},
            "description": "a kind a pyoco_next_fire_time plugin computes",
        },
        "end_at": {**INSTANT, "description": "no firing after this time"},
        "paused": {"type": "boolean", "default": False},
    }


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    number = {"type": ["number", "null"]}
    text = {"type": ["string", "null"]}
    return {
        "Schedule": {
            "type": "object",
            "required": ["schedule_id", "flow_name", "status", "schedule_type", "counters"],
            "properties": {
                "schedule_id": {"type": "string"},
                "flow_name": {"type": "string"},
                "tag": {"type": "string"},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                "params": {"type": "object"},
                "status": {"type": "string", "enum": STATUSES},
                "schedule_type": {"type": "string", "description": "once, interval, cron, …"},
                "workflow_yaml_sha256": text,
                "workflow_yaml_bytes": {"type": ["integer", "null"]},
                "tenant_id": text,
                "api_key_id": text,
                "created_at": number,
                "updated_at": number,
                "run_at": number,
                "interval_seconds": number,
                "start_at": number,
                "cron": text,
                "timezone": text,
                "end_at": number,
                "trigger": {"type": "object"},
                "paused": {"type": "boolean"},
                "next_run_at": number,
                "last_submitted_at": number,
                "last_run_id": text,
                "last_run_status": text,
                "dispatch_count": {"type": "integer"},
                "last_error": text,
                "counters": {
                    "type": "object",
                    "properties": {
                        "fired": {"type": "integer"},
                        "skipped": {"type": "integer"},
                        "missed": {"type": "integer"},
                    },
                },
                "buffered_slot": number,
                "next_fire_times": {"type": "array", "items": {"type": ["string", "null"]}},
                "next_fire_epochs": {"type": "array", "items": {"type": "number"}},
                "last_run": {"type": ["object", "null"]},
                **_policies(),
            },
        },
        "Backfilled": {
            "type": "object",
            "required": ["schedule_id", "slots", "created", "existing", "skipped"],
            "properties": {
                "schedule_id": {"type": "string"},
                "slots": {"type": "integer"},
                "created": {"type": "array", "items": {"type": "string"}},
                "existing": {"type": "array", "items": {"type": "string"}},
                "skipped": {"type": "array", "items": {"type": "object"}},
            },
        },
    }


def paths() -> dict[str, Any]:
    """This area's path items."""
    error = ref("schemas", "Error")
    schedule = ref("schemas", "Schedule")
    not_found = json_response(error, "no such schedule (or another tenant's): ERR-PYOCO-0046")
    limit_reached = json_response(
        error, "the tenant has PYOCO_SCHEDULES_MAX_PER_TENANT schedules: ERR-PYOCO-0047"
    )
    schedule_id = {
        "name": "schedule_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    limit = {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX}
    target = {
        "flow_name": {"type": "string", "minLength": 1, "maxLength": MAX_FLOW_NAME_CHARS},
        "tag": tag_schema(),
    }
    return {
        "/schedules": {
            "post": {
                "operationId": "createSchedule",
                "summary": "Create a schedule of a named flow",
                "description": "Exactly one of run_at, interval_seconds, cron or trigger. Every "
                "gateway fires it; each slot creates exactly one run.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["flow_name"],
                                "properties": {
                                    **target,
                                    "params": {"type": "object"},
                                    "tags": {"type": "array", "items": tag_schema()},
                                    **_trigger(),
                                    **_policies(),
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(schedule, "the schedule, with its next fire times"),
                    "409": limit_reached,
                    **error_responses(413, 422, 503),
                },
            },
            "get": {
                "operationId": "listSchedules",
                "summary": "The caller's schedules, newest first",
                "parameters": [
                    query_parameter("status", {"type": "string", "enum": STATUSES}, "only these"),
                    query_parameter("limit", limit, "how many at most"),
                    query_parameter(
                        "include",
                        {"type": "string", "enum": ["last_run"]},
                        "last_run: add each schedule's last_run_status",
                    ),
                ],
                "responses": {
                    "200": json_response({"type": "array", "items": schedule}, "schedules"),
                    **error_responses(422, 503),
                },
            },
        },
        "/schedules/yaml": {
            "post": {
                "operationId": "createYamlSchedule",
                "summary": "Create a schedule of an uploaded single-flow flow.yaml (0.7.0)",
                "description": "The YAML is checked by every pyoco_check_workflow_yaml hook now "
                "and again at every firing. The schedule fields are form fields.",
                "requestBody": form_body(
                    ["workflow", "flow_name"],
                    {
                        "workflow": {
                            "type": "string",
                            "contentMediaType": "application/yaml",
                        },
                        **target,
                        **{
                            name: {"type": "string"}
                            for name in (*_trigger(), *_policies())
                            if name != "trigger"
                        },
                    },
                ),
                "responses": {
                    "200": json_response(schedule, "the schedule"),
                    "409": limit_reached,
                    **error_responses(413, 422, 503),
                },
            }
        },
        "/schedules/{schedule_id}": {
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule: trigger, policies, counters, last run, next 10 fires",
                "parameters": [schedule_id],
                "responses": {
                    "200": json_response(schedule, "the schedule"),
                    "404": not_found,
                    **error_responses(503),
                },
            },
            "patch": {
                "operationId": "updateSchedule",
                "summary": "Pause, resume or change the policies or end time",
                "parameters": [schedule_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "minProperties": 1,
                                "additionalProperties": False,
                                "properties": {
                                    "paused": {"type": "boolean"},
                                    "resume_from": INSTANT,
                                    "end_at": INSTANT,
                                    **_policies(),
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(schedule, "the schedule after the change"),
                    "404": not_found,
                    **error_responses(413, 422, 503),
                },
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete a schedule (its runs stay)",
                "parameters": [schedule_id],
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "properties": {
                                "schedule_id": {"type": "string"},
                                "deleted": {"const": True},
                            },
                        },
                        "deleted",
                    ),
                    "404": not_found,
                    **error_responses(503),
                },
            },
        },
        "/schedules/{schedule_id}/runs": {
            "get": {
                "operationId": "listScheduleRuns",
                "summary": "The schedule's runs, most recently updated first",
                "parameters": [schedule_id, query_parameter("limit", limit, "how many at most")],
                "responses": {
                    "200": json_response(
                        {"type": "array", "items": ref("schemas", "RunSummary")}, "runs"
                    ),
                    "404": not_found,
                    **error_responses(422, 503),
                },
            }
        },
        "/schedules/{schedule_id}/backfill": {
            "post": {
                "operationId": "backfillSchedule",
                "summary": "Create the runs of past slots (idempotent)",
                "description": f"At most {MAX_BACKFILL_SLOTS} slots in [start, end], none in "
                "the future; a slot whose run exists is listed under existing.",
                "parameters": [schedule_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["start", "end"],
                                "properties": {"start": INSTANT, "end": INSTANT},
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(ref("schemas", "Backfilled"), "what was created"),
                    "404": not_found,
                    **error_responses(413, 422, 503),
                },
            }
        },
    }
