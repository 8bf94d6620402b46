"""Who may change the plugin registry.

With ``PYOCO_HTTP_AUTH_MODE=api_key`` only keys with the ``operator`` role may publish, delete
or pin, read the history or download a wheel; any valid key may list the registry. With auth
off, changes are refused unless the gateway was started with
``--allow-plugin-publish-without-auth`` (``PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH=true``), an opt-in
for a developer's own machine: anyone who can reach such a gateway can make every syncing
worker load code (which workers still refuse unless it is signed by a key they trust).
"""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ...api_keys import ROLE_OPERATOR
from ...config import Settings
from ..error_responses import ApiError

OPERATOR_REQUIRED = 40


def actor_of(req: falcon.asgi.Request) -> dict[str, Any]:
    """Who is acting, as recorded with releases and history events."""
    return {
        "tenant_id": getattr(req.context, "tenant_id", None),
        "api_key_id": getattr(req.context, "api_key_id", None),
        "role": getattr(req.context, "api_key_role", None),
    }


def require_operator(req: falcon.asgi.Request, settings: Settings, action: str) -> None:
    """403 ERR-PYOCO-0040 unless the caller may ``action`` (publish, delete, pin, …)."""
    if settings.http_auth_mode == "api_key":
        if getattr(req.context, "api_key_role", None) != ROLE_OPERATOR:
            raise ApiError(
                403,
                OPERATOR_REQUIRED,
                f"only API keys with the operator role may {action}; create one with "
                "pyoco-server-admin api-key create --tenant T --role operator",
            )
        return
    if not settings.plugin_publish_without_auth:
        raise ApiError(
            403,
            OPERATOR_REQUIRED,
            f"this gateway runs without authentication, so it refuses to {action}: turn on "
            "PYOCO_HTTP_AUTH_MODE=api_key and use an operator key, or (on a developer's own "
            "machine only) start it with --allow-plugin-publish-without-auth",
        )


def require_reader(req: falcon.asgi.Request, settings: Settings, action: str) -> None:
    """Reading history and wheel bytes needs an operator key when auth is on."""
    if settings.http_auth_mode == "api_key":
        require_operator(req, settings, action)
