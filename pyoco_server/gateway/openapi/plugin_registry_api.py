"""The plugin registry endpoints of the OpenAPI document (``/wheels``…, as
:mod:`..plugin_registry.resources` serves them) and their schemas."""

from __future__ import annotations

from typing import Any

from ...plugin_registry.records import ACTIONS
from ..plugin_registry.resources import HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX
from .shared import error_responses, form_body, json_response, query_parameter, ref

OPERATOR_ONLY = (
    "Needs an API key with the operator role (403 ERR-PYOCO-0040 otherwise); with "
    "authentication off it is refused unless the gateway runs with "
    "--allow-plugin-publish-without-auth."
)


def _error(description: str) -> dict[str, Any]:
    return json_response(ref("schemas", "Error"), description)


FORBIDDEN = _error("not an operator key, or auth off without the opt-in: ERR-PYOCO-0040")
NOT_FOUND = _error("no such wheel, release or distribution: ERR-PYOCO-0043")
CONFLICT = _error("the version is not above the registry's latest: ERR-PYOCO-0041")


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    text = {"type": ["string", "null"]}
    strings = {"type": "array", "items": {"type": "string"}}
    actor = {
        "type": "object",
        "properties": {"tenant_id": text, "api_key_id": text, "role": text},
    }
    return {
        "Wheel": {
            "type": "object",
            "required": ["name", "distribution", "version", "sha256_hex", "signed"],
            "properties": {
                "name": {"type": "string", "description": "the wheel filename"},
                "size_bytes": {"type": "integer"},
                "sha256_hex": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "tags": {**strings, "description": "workers with one of them install it; [] = all"},
                "mtime": {"type": "number"},
                "distribution": {"type": "string"},
                "version": {"type": "string"},
                "entry_points": strings,
                "requires": strings,
                "signed": {"type": "boolean"},
                "key_id": text,
                "publisher": actor,
                "published_at": {"type": "number"},
                "latest": {"type": "boolean"},
                "pinned": {"type": "boolean"},
            },
        },
        "WheelEvent": {
            "type": "object",
            "required": ["event_id", "occurred_at", "action"],
            "properties": {
                "event_id": {"type": "string"},
                "occurred_at": {"type": "number"},
                "action": {"type": "string", "enum": list(ACTIONS)},
                "wheel_name": text,
                "distribution": text,
                "version": text,
                "tags": strings,
                "size_bytes": {"type": ["integer", "null"]},
                "sha256_hex": text,
                "key_id": text,
                "replace": {"type": ["boolean", "null"]},
                "actor": actor,
            },
        },
    }


def paths() -> dict[str, Any]:
    """This area's ``paths``."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/wheels": {
            "get": {
                "operationId": "listWheels",
                "summary": "Every published plugin wheel",
                "responses": {
                    "200": json_response(
                        {"type": "array", "items": ref("schemas", "Wheel")}, "by distribution"
                    ),
                    **error_responses(503),
                },
            },
            "post": {
                "operationId": "publishWheel",
                "summary": "Publish a plugin wheel",
                "description": "Preflight (filename, archive, size, a pyoco_server entry point "
                "unless allowed, a version above the latest), then stored in the Object Store. "
                + OPERATOR_ONLY,
                "requestBody": form_body(
                    ["wheel"],
                    {
                        "wheel": {"type": "string", "format": "binary"},
                        "tags": {"type": "string", "description": "comma-separated"},
                        "replace": {"type": "string", "description": "0.5.1"},
                        "signature": {
                            "type": "string",
                            "description": "JSON {algorithm, key_id, public_key, "
                            "signature} from pyoco-client plugins publish",
                        },
                        "allow_no_entry_points": {"type": "string"},
                    },
                ),
                "responses": {
                    "200": json_response(ref("schemas", "Wheel"), "stored"),
                    "403": FORBIDDEN,
                    "409": CONFLICT,
                    **error_responses(413, 422, 503),
                },
            },
        },
        "/wheels/history": {
            "get": {
                "operationId": "listWheelHistory",
                "summary": "Publish, delete and pin events, newest first",
                "parameters": [
                    query_parameter(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": HISTORY_LIMIT_MAX,
                            "default": HISTORY_LIMIT_DEFAULT,
                        },
                        "how many events at most",
                    ),
                    query_parameter("wheel_name", {"type": "string"}, "only this wheel"),
                    query_parameter(
                        "action", {"type": "string", "enum": list(ACTIONS)}, "only this action"
                    ),
                ],
                "responses": {
                    "200": json_response(
                        {"type": "array", "items": ref("schemas", "WheelEvent")}, "events"
                    ),
                    "403": FORBIDDEN,
                    **error_responses(422, 503),
                },
            }
        },
        "/wheels/pin": {
            "post": {
                "operationId": "pinWheel",
                "summary": "Pin a distribution to a version (null unpins)",
                "description": "Workers run the pinned version between runs. " + OPERATOR_ONLY,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["distribution"],
                                "properties": {
                                    "distribution": {"type": "string", "minLength": 1},
                                    "version": {"type": ["string", "null"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "properties": {
                                "distribution": {"type": "string"},
                                "pinned": {"type": ["string", "null"]},
                            },
                        },
                        "pinned",
                    ),
                    "403": FORBIDDEN,
                    "404": NOT_FOUND,
                    "409": CONFLICT,
                    **error_responses(413, 422, 503),
                },
            }
        },
        "/wheels/{name}": {
            "get": {
                "operationId": "downloadWheel",
                "summary": "The bytes of a stored wheel (operators when auth is on)",
                "parameters": [name],
                "responses": {
                    "200": {
                        "description": "the wheel",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "403": FORBIDDEN,
                    "404": NOT_FOUND,
                    **error_responses(503),
                },
            },
            "delete": {
                "operationId": "deleteWheel",
                "summary": "Remove a wheel; workers go back to the pinned or previous version",
                "description": OPERATOR_ONLY,
                "parameters": [name],
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "deleted": {"const": True},
                            },
                        },
                        "removed",
                    ),
                    "403": FORBIDDEN,
                    "404": NOT_FOUND,
                    "409": CONFLICT,
                    **error_responses(503),
                },
            },
        },
    }
