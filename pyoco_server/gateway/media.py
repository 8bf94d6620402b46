"""Reading request bodies: a size cap first, then JSON or a multipart form.

The body is read with a cap before anything parses it: a declared ``Content-Length`` over the
cap is refused at once, a chunked body as soon as it grows past it (413 ERR-PYOCO-0019).
Multipart forms are then parsed by Falcon's own multipart handler from the capped bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.asgi
from falcon.media import JSONHandler, MultipartFormHandler
from falcon.util.mediatypes import parse_header

from ..config import Settings
from ..nesting import NestingTooDeep, loads_bounded
from ..text import has_lone_surrogate, json_may_hold_surrogates
from .error_responses import BODY_TOO_LARGE, ApiError, invalid, too_deep


@dataclass(frozen=True)
class FormPart:
    """One field of a multipart form."""

    name: str
    data: bytes
    filename: str | None = None

    def text(self) -> str:
        """The field as text; a 422 when it is not UTF-8."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(
                f"form field '{self.name}' is not UTF-8 text",
                [{"field": self.name, "message": "not UTF-8 text"}],
            ) from None


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        BODY_TOO_LARGE,
        f"request body is larger than {limit} bytes (PYOCO_HTTP_MAX_BODY_BYTES)",
    )


async def read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The whole request body, or 413 ERR-PYOCO-0019 as soon as it exceeds ``limit`` bytes."""
    declared = req.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(req: falcon.asgi.Request) -> str | None:
    if not req.content_type:
        return None
    media_type, _ = parse_header(req.content_type)
    return media_type.lower()


def parse_json(req: falcon.asgi.Request, raw: bytes, max_depth: int) -> Any:
    """Decode a JSON body (``application/json`` or ``*+json``; no Content-Type is tolerated).

    A body nesting deeper than ``max_depth`` levels is a 422 naming the limit.
    """
    media_type = _media_type(req)
    if media_type not in (None, "application/json") and not media_type.endswith("+json"):
        raise invalid(
            f"Content-Type must be application/json, not {media_type!r}",
            [{"field": "Content-Type", "message": "expected application/json"}],
        )
    if not raw.strip():
        raise invalid("the request body is empty; expected a JSON object")
    try:
        document = loads_bounded(raw, max_depth, "the request body")
    except NestingTooDeep as exc:
        raise too_deep(exc) from None
    except UnicodeDecodeError:
        raise invalid("the request body is not UTF-8 encoded JSON") from None
    except ValueError as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from None
    if json_may_hold_surrogates(raw) and has_lone_surrogate(document):
        raise invalid(
            "the request body holds a \\u escape of a lone UTF-16 surrogate, which is not text"
        )
    return document


def _dump_json(document: Any) -> bytes:
    """JSON for a response: UTF-8 as usual; ``\\u`` escapes for text UTF-8 cannot encode."""
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document).encode("utf-8")


def install_json_responses(app: falcon.asgi.App) -> None:
    """Render ``resp.media`` with :func:`_dump_json`: no response fails to serialize."""
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = JSONHandler(dumps=_dump_json)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def parse_multipart(req: falcon.asgi.Request, raw: bytes) -> dict[str, FormPart]:
    """Parse a ``multipart/form-data`` body into its fields (a field given twice is a 422)."""
    if _media_type(req) != "multipart/form-data":
        raise invalid(
            "Content-Type must be multipart/form-data",
            [{"field": "Content-Type", "message": "expected multipart/form-data"}],
        )
    handler = MultipartFormHandler()
    parts: dict[str, FormPart] = {}
    try:
        form = await handler.deserialize_async(_once(raw), req.content_type, len(raw))
        async for part in form:
            name = part.name or ""
            if name in parts:
                raise invalid(
                    f"form field '{name}' is given more than once",
                    [{"field": name, "message": "given more than once"}],
                )
            parts[name] = FormPart(name, await part.stream.read(), part.filename)
    except falcon.HTTPError as exc:
        if isinstance(exc, ApiError):
            raise
        raise invalid(f"malformed multipart form: {exc.description or exc.title}") from None
    return parts


#: Room for a form's boundaries, headers and small fields beside its file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


async def read_form(
    req: falcon.asgi.Request, file_limit: int, body_limit: int
) -> dict[str, FormPart]:
    """A multipart form whose file may be up to ``file_limit`` bytes, the whole body capped at
    the larger of ``body_limit`` and the file plus :data:`MULTIPART_OVERHEAD_BYTES`."""
    limit = max(body_limit, file_limit + MULTIPART_OVERHEAD_BYTES)
    return await parse_multipart(req, await read_body(req, limit))


def required_file(form: dict[str, FormPart], field: str, what: str) -> FormPart:
    """The form's ``field``, or a 422 naming it (``what`` says what the field must hold)."""
    part = form.get(field)
    if part is None:
        raise invalid(
            f"the form needs a '{field}' file field with {what}",
            [{"field": field, "message": "required"}],
        )
    return part


async def read_json(req: falcon.asgi.Request, settings: Settings, limit: int | None = None) -> Any:
    """The JSON body, capped at ``limit`` bytes (default ``PYOCO_HTTP_MAX_BODY_BYTES``) and at
    ``PYOCO_MAX_NESTING_DEPTH`` levels."""
    raw = await read_body(req, settings.http_max_body_bytes if limit is None else limit)
    return parse_json(req, raw, settings.max_nesting_depth)
