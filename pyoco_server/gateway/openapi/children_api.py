"""OpenAPI of child runs: spawn bundles, approval, the tree fields of a run."""

from __future__ import annotations

from typing import Any

from ..validation import MAX_RUN_ID_CHARS
from .shared import error_responses, form_body, json_response, query_parameter, ref, tag_schema

#: Fields every run snapshot shows about its place in a run tree.
TREE_PROPERTIES: dict[str, Any] = {
    "parent_run_id": {
        "type": ["string", "null"],
        "description": "the run whose task spawned this one (null for a submitted run)",
    },
    "root_run_id": {"type": "string", "description": "the top of the tree (itself if none)"},
    "child_run_ids": {
        "type": "array",
        "items": {"type": "string"},
        "description": "runs this run spawned, in spawn order; ids are deterministic: "
        "<parent>.<task>.<index>",
    },
    "spawn_depth": {"type": "integer", "minimum": 0},
}


def parent_parameter() -> dict[str, Any]:
    """``GET /runs?parent_run_id=``."""
    return query_parameter(
        "parent_run_id",
        {"type": "string", "minLength": 1, "maxLength": MAX_RUN_ID_CHARS},
        "only the children of this run, in spawn order (the other filters and limit apply; "
        "no cursor)",
    )


def schemas() -> dict[str, Any]:
    """This area's schemas."""
    return {}


#: The optional body of a rejection.
REJECT_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "reason": {
                        "type": "string",
                        "maxLength": 1024,
                        "description": "why; recorded in error and approval.reason",
                    }
                },
            }
        }
    },
}


def _decision(name: str, verb: str, result: str, note: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{name}Run",
        "summary": f"{verb} a spawn bundle run waiting in PENDING_APPROVAL",
        "description": f"PENDING_APPROVAL becomes {result}. Repeating the same decision "
        f"answers the snapshot unchanged; any other status is 409 ERR-PYOCO-0036. {note}",
        "parameters": [ref("parameters", "RunId")],
        "responses": {
            "200": json_response(ref("schemas", "RunSnapshot"), "the run's snapshot"),
            **error_responses(404, 409, 503),
        },
    }
    if name == "reject":
        operation["requestBody"] = REJECT_BODY
        operation["responses"].update(error_responses(422))
    return {"post": operation}


def paths() -> dict[str, Any]:
    """This area's path items."""
    return {
        "/runs/bundle": {
            "post": {
                "operationId": "submitBundle",
                "summary": "Submit a spawn bundle (several workflows, spawn: tasks)",
                "description": "Top level version, workflows (name → single-flow document; a "
                "task is callable/use or spawn: <workflow> with inputs, on_child_failure "
                "fail|continue, cancel_with_parent), submit: {entry_workflow, inputs}. Every "
                "workflow is checked by every pyoco_check_workflow_yaml hook; a spawn target "
                "outside the bundle is 422 (reason unknown_spawn_target). A bundle whose entry "
                "can reach a spawn waits in PENDING_APPROVAL unless "
                "PYOCO_SPAWN_REQUIRES_APPROVAL is off.",
                "requestBody": form_body(
                    ["bundle"],
                    {
                        "bundle": {
                            "type": "string",
                            "contentMediaType": "application/yaml",
                            "description": "the bundle YAML file",
                        },
                        "tag": tag_schema(),
                    },
                ),
                "responses": {
                    "200": json_response(
                        ref("schemas", "RunSubmitted"),
                        "the run was stored: PENDING (queued) or PENDING_APPROVAL",
                    ),
                    **error_responses(413, 422, 503),
                },
            }
        },
        "/runs/{run_id}/approve": _decision(
            "approve",
            "Approve",
            "PENDING and is queued",
            "The job is queued before the snapshot is written (a worker that takes it "
            "first records the approval), so retrying a lost answer is safe.",
        ),
        "/runs/{run_id}/reject": _decision(
            "reject",
            "Reject",
            "CANCELLED",
            "An optional JSON body {reason} is recorded (error: 'rejected by approval: "
            "<reason>'); a reason that is not a string of at most 1024 characters is 422.",
        ),
    }
