"""API key authentication for the gateway (docs/auth.md), as Falcon ASGI middleware.

Every path is protected except an explicit open set (``/health``, ``/ready`` and the
dashboard's static page and files, which hold no data), so a route added later is protected
without anyone remembering to. The key is checked in ``process_request``,
before routing and before any responder reads or validates the body: an unauthenticated
request never gets a 413 or 422 that would reveal how its body was judged.
"""

from __future__ import annotations

from collections.abc import Iterable

import falcon
import falcon.asgi

from ..api_keys import (
    DEFAULT_CACHE_ENTRIES,
    ApiKeyRejected,
    ApiKeyStore,
    AuthBackendUnavailable,
    RecordCache,
    pepper_of,
)
from ..config import Settings
from ..errors import ERROR_MESSAGES, err_id, msg_id
from ..log import get_logger
from ..nats_client import NatsConnection
from .dashboard import PUBLIC_PATHS as DASHBOARD_PATHS

log = get_logger(__name__)

#: Liveness and readiness probes: answered without a key so orchestrators can probe.
PROBE_PATHS = frozenset({"/health", "/ready"})
#: Paths answered without a key: the probes, and the dashboard's page, static files and
#: config (no data: the page asks the operator for a key and every API call carries it).
#: Exact paths only — an unknown ``/ui/...`` path still needs a key.
OPEN_PATHS = PROBE_PATHS | DASHBOARD_PATHS

_STATUS = {3: falcon.HTTP_503, 14: falcon.HTTP_401, 15: falcon.HTTP_403}


def _refuse(resp: falcon.asgi.Response, number: int, detail: str) -> None:
    """Answer now with the contract's error body; Falcon then skips routing and the responder."""
    resp.status = _STATUS[number]
    resp.media = {"detail": detail, "err_id": err_id(number), "msg_id": msg_id(number)}
    resp.complete = True


class AnonymousContext:
    """Middleware for ``PYOCO_HTTP_AUTH_MODE=none``: every request is tenant-less."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.tenant_id = None
        req.context.api_key_id = None
        req.context.api_key_role = None


class ApiKeyAuthMiddleware:
    """Middleware for ``PYOCO_HTTP_AUTH_MODE=api_key``.

    Missing key → 401 ERR-PYOCO-0014; malformed, unknown or revoked key → 403 ERR-PYOCO-0015;
    key store unreachable → 503 ERR-PYOCO-0003. On success ``req.context.tenant_id`` and
    ``req.context.api_key_id`` name the caller. Requests for ``open_paths`` pass unchecked,
    with both set to None.
    """

    def __init__(
        self,
        settings: Settings,
        store: ApiKeyStore,
        open_paths: Iterable[str] = OPEN_PATHS,
    ) -> None:
        self.header = settings.http_api_key_header
        self.store = store
        self.open_paths = frozenset(open_paths)

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.tenant_id = None
        req.context.api_key_id = None
        req.context.api_key_role = None
        if req.path in self.open_paths:
            return
        presented = req.get_header(self.header)
        if not presented:
            log.info("api_key_missing", method=req.method, path=req.path, err_id=err_id(14))
            resp.set_header("WWW-Authenticate", f'ApiKey header="{self.header}"')
            _refuse(resp, 14, f"{ERROR_MESSAGES[14]}: send it in the {self.header} header")
            return
        try:
            identity = await self.store.verify(presented)
        except ApiKeyRejected as exc:
            log.warning(
                "api_key_rejected",
                reason=exc.reason,
                key_id=exc.key_id,
                method=req.method,
                path=req.path,
                err_id=exc.err_id,
            )
            _refuse(resp, 15, ERROR_MESSAGES[15])
            return
        except AuthBackendUnavailable as exc:
            log.warning("api_key_check_unavailable", error=str(exc), err_id=exc.err_id)
            resp.set_header("Retry-After", "1")
            _refuse(resp, 3, f"{ERROR_MESSAGES[3]}: the API key cannot be checked right now")
            return
        req.context.tenant_id = identity.tenant_id
        req.context.api_key_id = identity.key_id
        req.context.api_key_role = identity.role


#: What a gateway logs once at start when API keys are on and no pepper is set.
NO_PEPPER_NOTE = (
    "API keys are checked without a pepper (PYOCO_AUTH_PEPPER unset): they are safe against a "
    "leaked key store, being 256-bit random; setting a pepper (the same on every gateway and "
    "for pyoco-server-admin) also stops anyone who can write the key store from minting keys. "
    "Run `pyoco-server-admin api-key bind-pepper` first so existing keys keep working "
    "(docs/auth.md)"
)


def gateway_key_store(settings: Settings, nats: NatsConnection) -> ApiKeyStore:
    """The key store a gateway verifies against, with the bounded cache of
    ``PYOCO_AUTH_CACHE_TTL_SEC``; without a pepper, says so once in the log."""
    pepper = pepper_of(settings)
    if not pepper:
        log.info("auth_pepper_not_set", detail=NO_PEPPER_NOTE)
    return ApiKeyStore(
        lambda: nats.kv(settings.auth_kv_bucket),
        pepper,
        RecordCache(settings.auth_cache_ttl_sec, DEFAULT_CACHE_ENTRIES),
    )


def build_auth_middleware(
    settings: Settings,
    nats: NatsConnection,
    open_paths: Iterable[str] = OPEN_PATHS,
) -> AnonymousContext | ApiKeyAuthMiddleware:
    """The middleware for ``settings.http_auth_mode``. Put it first in the middleware list so no
    other middleware judges a request before its key is checked."""
    if settings.http_auth_mode != "api_key":
        return AnonymousContext()
    return ApiKeyAuthMiddleware(settings, gateway_key_store(settings, nats), open_paths)


def install_auth(
    app: falcon.asgi.App,
    settings: Settings,
    nats: NatsConnection,
    open_paths: Iterable[str] = OPEN_PATHS,
) -> AnonymousContext | ApiKeyAuthMiddleware:
    """Append the auth middleware of ``settings`` to ``app``; return it (tests use ``.store``)."""
    middleware = build_auth_middleware(settings, nats, open_paths)
    app.add_middleware(middleware)
    return middleware
