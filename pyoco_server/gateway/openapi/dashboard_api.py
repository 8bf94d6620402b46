"""The dashboard's routes in the OpenAPI document (:mod:`..dashboard`) and their schema."""

from __future__ import annotations

from typing import Any

from ...config import AUTH_MODES
from ..dashboard import CONTENT_SECURITY_POLICY
from .shared import json_response, ref


def schemas() -> dict[str, Any]:
    """This area's ``components.schemas``."""
    return {
        "DashboardConfig": {
            "type": "object",
            "required": ["auth_mode", "api_key_header", "version"],
            "properties": {
                "auth_mode": {"type": "string", "enum": list(AUTH_MODES)},
                "api_key_header": {"type": "string"},
                "version": {"type": "string"},
            },
        },
    }


def paths() -> dict[str, Any]:
    """This area's path items."""
    return {
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
                    "200": json_response(ref("schemas", "DashboardConfig"), "the configuration")
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
                    "404": ref("responses", "Unexpected"),
                    "503": ref("responses", "Unavailable"),
                },
            }
        },
    }
