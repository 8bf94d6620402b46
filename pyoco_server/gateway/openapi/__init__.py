"""The OpenAPI 3.1 document of the gateway, written by hand as data, one module per area
(as :mod:`..resources` is split).

Every route :func:`~pyoco_server.gateway.app.create_app` adds must appear here (a test checks
both directions). Add an endpoint by adding its path item to the ``paths()`` of its area's
module; error responses reuse the shared ``components.responses`` (:mod:`.shared`). Patterns
and limits are imported from the code that enforces them, never written again here.
"""

from __future__ import annotations

from typing import Any

from ... import __version__
from . import (
    children_api,
    dashboard_api,
    dead_letter_api,
    plugin_registry_api,
    run_api,
    schedule_api,
    shared,
    system_api,
)

#: The areas of the document, in the order their paths appear.
AREAS = (
    system_api,
    run_api,
    children_api,
    schedule_api,
    dead_letter_api,
    plugin_registry_api,
    dashboard_api,
)


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = shared.schemas()
    for area in AREAS:
        paths.update(area.paths())
        schemas.update(area.schemas())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pyoco-server",
            "version": __version__,
            "description": "Submit pyoco flows over HTTP, run them on workers, follow them "
            "to the end. Every error is JSON {detail, err_id, msg_id}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": shared.responses(),
            "parameters": shared.parameters(),
        },
    }
