"""Error responses of the gateway: one JSON shape, one place that logs them.

Every error leaves the gateway as ``{"detail", "err_id", "msg_id"}`` (docs/http-api.md,
docs/error-ids.md), plus optional fields such as ``errors``, ``reason`` or ``key``. Responders
raise :class:`ApiError`; the handlers below turn NATS outages, policy violations, Falcon's own
HTTP errors and unexpected exceptions into one, and :func:`serialize_error` writes and logs it.
Request bodies and headers are never logged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import falcon
import nats.errors
import nats.js.errors

from ..errors import ERROR_MESSAGES, PolicyViolation, err_id, msg_id
from ..log import get_logger
from ..nats_client import NatsUnavailable
from ..nesting import NestingTooDeep

log = get_logger(__name__)

INVALID_REQUEST = 2
NATS_UNAVAILABLE = 3
RUN_NOT_FOUND = 5
YAML_TOO_LARGE = 16
BODY_TOO_LARGE = 19
NO_SUCH_ENDPOINT = 20
IDEMPOTENCY_IN_PROGRESS = 21
INTERNAL_ERROR = 22
DEAD_LETTER_NOT_FOUND = 28
CANNOT_REDRIVE = 29

#: Exceptions that mean "NATS cannot serve this request right now" (answered 503).
NATS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    NatsUnavailable,
    asyncio.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    nats.js.errors.NoStreamResponseError,
)

_NUMBER_BY_STATUS = {
    404: NO_SUCH_ENDPOINT,
    405: NO_SUCH_ENDPOINT,
    413: BODY_TOO_LARGE,
    503: NATS_UNAVAILABLE,
}


class ApiError(falcon.HTTPError):
    """An error response with our error number, a human ``detail`` and optional extra fields."""

    def __init__(
        self,
        http_status: int,
        number: int,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(
            http_status, title=ERROR_MESSAGES.get(number), description=detail, headers=headers
        )
        self.number = number
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {
            "detail": self.detail,
            "err_id": err_id(self.number),
            "msg_id": msg_id(self.number),
            **self.extra,
        }


def invalid(detail: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    """A 422 for a request that cannot be accepted; ``errors`` name the offending fields."""
    extra = {"errors": errors} if errors else {}
    return ApiError(422, INVALID_REQUEST, detail, **extra)


def too_deep(error: NestingTooDeep) -> ApiError:
    """The 422 of a document nesting deeper than ``PYOCO_MAX_NESTING_DEPTH``."""
    return ApiError(
        422,
        INVALID_REQUEST,
        str(error),
        reason="too_deep",
        limit=error.limit,
        errors=[{"field": error.what, "message": f"nests deeper than {error.limit} levels"}],
    )


async def handle_too_deep(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: NestingTooDeep, params: dict
) -> None:
    """A document (body or stored snapshot) too deep to handle → 422 naming the limit."""
    raise too_deep(error) from None


def run_not_found(run_id: str) -> ApiError:
    """The 404 of a run that does not exist or belongs to another tenant."""
    return ApiError(404, RUN_NOT_FOUND, f"run {run_id!r} not found")


def cannot_redrive(seq: int, reason: str, detail: str, **extra: Any) -> ApiError:
    """The 409 of a redrive that is refused; ``reason`` is a code (``run_not_terminal``,
    ``already_redriven``, ``redrive_in_progress``, ``no_job``, ``run_missing``)."""
    return ApiError(409, CANNOT_REDRIVE, detail, reason=reason, seq=seq, **extra)


def nats_unavailable(detail: str = "NATS is unavailable; retry shortly") -> ApiError:
    """The 503 of a request NATS could not serve."""
    return ApiError(503, NATS_UNAVAILABLE, detail, headers={"Retry-After": "1"})


def _as_api_error(error: falcon.HTTPError) -> ApiError:
    if isinstance(error, ApiError):
        return error
    status = error.status_code
    number = _NUMBER_BY_STATUS.get(status, INTERNAL_ERROR if status >= 500 else INVALID_REQUEST)
    detail = error.description or error.title or ERROR_MESSAGES[number]
    return ApiError(status, number, detail)


def serialize_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError
) -> None:
    """Falcon error serializer: write the JSON error body and log the error once."""
    api_error = _as_api_error(error)
    body = api_error.body()
    resp.content_type = falcon.MEDIA_JSON
    resp.media = body
    fields: dict[str, Any] = {
        "status": error.status_code,
        "err_id": body["err_id"],
        "msg_id": body["msg_id"],
        "method": req.method,
        "path": req.path,
        "detail": api_error.detail,
    }
    if error.status_code >= 500:
        cause = error.__cause__ or error.__context__
        if cause is not None:
            fields["exc_info"] = cause
        log.error("http_error", **fields)
    else:
        log.warning("http_error", **fields)


async def handle_nats_outage(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: dict
) -> None:
    """NATS down, a JetStream timeout or a lost connection → 503 ERR-PYOCO-0003."""
    raise nats_unavailable(f"NATS is unavailable ({type(error).__name__}); retry shortly") from (
        error
    )


async def handle_policy_violation(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: PolicyViolation, params: dict
) -> None:
    """A rejected workflow YAML → 422 ERR-PYOCO-0002 (413 ERR-PYOCO-0016 when too large)."""
    if error.reason == "too_large":
        status, number = 413, YAML_TOO_LARGE
    else:
        status, number = 422, INVALID_REQUEST
    raise ApiError(status, number, error.detail, reason=error.reason, key=error.key) from error


async def handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: dict
) -> None:
    """Anything else → 500 ERR-PYOCO-0022 (the exception is logged, never sent)."""
    if isinstance(error, nats.js.errors.NotFoundError):
        # A stream or bucket vanished (deleted by hand, or a NATS server with an empty store).
        raise nats_unavailable(f"a NATS resource is missing: {error}") from error
    raise ApiError(500, INTERNAL_ERROR, "internal server error") from error


def install_error_handling(app: falcon.asgi.App) -> None:
    """Register the handlers and the serializer on ``app``."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(NATS_OUTAGE_ERRORS, handle_nats_outage)
    app.add_error_handler(PolicyViolation, handle_policy_violation)
    app.add_error_handler(NestingTooDeep, handle_too_deep)
    app.set_error_serializer(serialize_error)
