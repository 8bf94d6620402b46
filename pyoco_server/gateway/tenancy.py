"""Who is calling: the tenant and API key the authentication middleware put on the request.

With authentication on, the auth middleware sets ``req.context.tenant_id`` and
``req.context.api_key_id`` before any responder runs. With it off both are ``None`` and the
caller is the single, unrestricted tenant of an open deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon.asgi


@dataclass(frozen=True)
class Caller:
    """The caller's tenant (``None``: authentication off) and API key id."""

    tenant_id: str | None = None
    api_key_id: str | None = None

    def sees(self, snapshot: dict[str, Any]) -> bool:
        """True when the run belongs to the caller's tenant (any run when auth is off)."""
        return self.tenant_id is None or snapshot.get("tenant_id") == self.tenant_id


def caller_of(req: falcon.asgi.Request) -> Caller:
    """The :class:`Caller` of ``req``."""
    return Caller(
        tenant_id=getattr(req.context, "tenant_id", None),
        api_key_id=getattr(req.context, "api_key_id", None),
    )
