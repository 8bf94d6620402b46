"""What every area of the OpenAPI document shares: helpers, the error body, the error
responses and the common parameters.

Patterns and limits come from the code that enforces them (:mod:`pyoco_server.config`,
:mod:`..validation`), converted by :func:`json_pattern`, so the document cannot drift from
what the gateway accepts.
"""

from __future__ import annotations

import re
from typing import Any

from ...config import TAG_PATTERN
from ..validation import (
    FLAG_FALSE_WORDS,
    FLAG_TRUE_WORDS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_TAG_CHARS,
)

JSON = "application/json"


def ref(kind: str, name: str) -> dict[str, str]:
    """A reference to ``#/components/<kind>/<name>``."""
    return {"$ref": f"#/components/{kind}/{name}"}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response (or request body) whose JSON content follows ``schema``."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def form_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A required ``multipart/form-data`` request body (the upload routes)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    """The shared error responses for ``statuses``, plus ``default`` (404/405/500)."""
    names = {
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
        422: "Invalid",
        503: "Unavailable",
    }
    responses = {str(status): ref("responses", names[status]) for status in statuses}
    responses["default"] = ref("responses", "Unexpected")
    return responses


def json_pattern(regex: re.Pattern[str], optional: bool = False) -> str:
    """``regex`` (anchored ``^…\\Z`` as the validators write it) as a JSON Schema pattern;
    ``optional`` also accepts the empty string."""
    body = regex.pattern.removeprefix("^").removesuffix("\\Z").removesuffix("$")
    return f"^({body})?$" if optional else f"^{body}$"


def tag_schema() -> dict[str, Any]:
    """A routing tag, as :func:`..validation.run_request` and the list filters accept it."""
    return {"type": "string", "pattern": json_pattern(TAG_PATTERN), "maxLength": MAX_TAG_CHARS}


def schemas() -> dict[str, Any]:
    """``Error``: the JSON body of every error response."""
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
                    "(forbidden_key, unknown_key, callable_not_allowed, env_not_allowed, …), "
                    "or too_deep for a JSON body or YAML nesting past PYOCO_MAX_NESTING_DEPTH",
                },
                "key": {
                    "type": ["string", "null"],
                    "description": "the offending key, callable or environment variable",
                },
                "limit": {
                    "type": "integer",
                    "description": "with reason too_deep: the nesting limit "
                    "(PYOCO_MAX_NESTING_DEPTH)",
                },
            },
        }
    }


def responses() -> dict[str, Any]:
    """The shared error responses (``components.responses``)."""
    error = ref("schemas", "Error")
    return {
        "NotFound": json_response(
            error, "no such run (or it belongs to another tenant): ERR-PYOCO-0005"
        ),
        "Conflict": json_response(
            error,
            "a request with the same Idempotency-Key is still in progress: ERR-PYOCO-0021",
        ),
        "TooLarge": json_response(
            error,
            "request body over PYOCO_HTTP_MAX_BODY_BYTES (ERR-PYOCO-0019) or workflow YAML over "
            "PYOCO_WORKFLOW_YAML_MAX_BYTES (ERR-PYOCO-0016)",
        ),
        "Invalid": json_response(
            error,
            "invalid request or workflow YAML: ERR-PYOCO-0002; 'errors' names the fields, "
            "'reason' and 'key' explain a policy rejection",
        ),
        "Unavailable": json_response(error, "NATS unavailable: ERR-PYOCO-0003 (retry later)"),
        "Unexpected": json_response(
            error,
            "unknown path or method (404/405, ERR-PYOCO-0020) or an internal error "
            "(500, ERR-PYOCO-0022; details are only in the gateway's log)",
        ),
    }


def parameters() -> dict[str, Any]:
    """The shared parameters (``components.parameters``): ``RunId``, ``IdempotencyKey``."""
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


def flag_schema(default: bool) -> dict[str, Any]:
    """A boolean query parameter, as :func:`..validation.flag` reads it."""
    return {
        "anyOf": [
            {"type": "boolean"},
            {"type": "string", "enum": [*FLAG_TRUE_WORDS, *FLAG_FALSE_WORDS]},
        ],
        "default": default,
    }


def query_parameter(
    name: str, schema: dict[str, Any], description: str, explode: bool = False
) -> dict[str, Any]:
    """An optional query parameter (``explode``: repeatable, form style)."""
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    parameter["description"] = description
    if explode:
        parameter.update(style="form", explode=True)
    return parameter
