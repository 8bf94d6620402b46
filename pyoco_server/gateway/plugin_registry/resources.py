"""``/wheels`` resources: 0.5.1's shapes (list, upload, history, download, delete) and pin."""

from __future__ import annotations

import json
from typing import Any

import falcon
import falcon.asgi

from ...config import TAG_PATTERN
from ...plugin_registry.preflight import WheelRejected, inspect_wheel
from ...plugin_registry.signing import check_signature_document
from ...plugin_registry.store import PluginRegistry, VersionConflict, WheelNotFound
from ..error_responses import ApiError, invalid
from ..media import read_form, read_json
from ..services import GatewayServices
from .access import actor_of, require_operator, require_reader

#: Room for the multipart framing and the small form fields around the wheel.
HISTORY_LIMIT_DEFAULT = 100
HISTORY_LIMIT_MAX = 500
PREFLIGHT_FAILED = 42
VERSION_CONFLICT = 41
WHEEL_NOT_FOUND = 43


def _registry(services: GatewayServices) -> PluginRegistry:
    return PluginRegistry(services.nats.js, services.settings)


def _not_found(exc: WheelNotFound) -> ApiError:
    return ApiError(404, WHEEL_NOT_FOUND, str(exc))


def _bool_field(form: dict[str, Any], name: str, default: bool) -> bool:
    if name not in form:
        return default
    raw = form[name].text().strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise invalid(f"form field {name!r} must be true or false", [{"field": name, "message": raw}])


def _tags(form: dict[str, Any]) -> list[str]:
    raw = form["tags"].text() if "tags" in form else ""
    tags = list(dict.fromkeys(tag.strip() for tag in raw.split(",") if tag.strip()))
    bad = [tag for tag in tags if not TAG_PATTERN.match(tag)]
    if bad:
        raise invalid(
            f"invalid wheel tags {bad}: each must match ^[A-Za-z0-9_-]+$",
            [{"field": "tags", "message": "invalid tag"}],
        )
    return tags


def _signature(form: dict[str, Any], filename: str, sha256: str) -> dict[str, str] | None:
    if "signature" not in form or not form["signature"].data.strip():
        return None
    try:
        return check_signature_document(json.loads(form["signature"].text()), filename, sha256)
    except ValueError as exc:
        raise invalid(
            f"invalid signature: {exc}", [{"field": "signature", "message": str(exc)}]
        ) from None


class WheelsResource:
    """``GET /wheels`` (every stored wheel) and ``POST /wheels`` (publish one, operators).

    The form: ``wheel`` (the file), ``tags`` (comma-separated; none = every worker),
    ``replace`` (0.5.1, accepted; a stored version is never replaced), ``signature`` (the JSON
    signature document ``pyoco-client plugins publish --sign-key`` makes) and
    ``allow_no_entry_points``.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = await _registry(self.services).list()

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        settings = self.services.settings
        require_operator(req, settings, "publish plugin wheels")
        form = await read_form(req, settings.wheel_max_bytes, body_limit=0)
        wheel = form.get("wheel")
        if wheel is None or not wheel.filename:
            raise invalid(
                "the form needs a 'wheel' file field", [{"field": "wheel", "message": "required"}]
            )
        tags = _tags(form)
        replace = _bool_field(form, "replace", True)
        try:
            facts = inspect_wheel(
                wheel.filename,
                wheel.data,
                settings.wheel_max_bytes,
                require_entry_point=not _bool_field(form, "allow_no_entry_points", False),
            )
        except WheelRejected as exc:
            raise ApiError(422, PREFLIGHT_FAILED, str(exc), problems=exc.problems) from None
        signature = _signature(form, facts.filename, facts.sha256)
        try:
            resp.media = await _registry(self.services).publish(
                facts, wheel.data, tags, signature, actor_of(req), replace
            )
        except VersionConflict as exc:
            raise ApiError(409, VERSION_CONFLICT, str(exc)) from None


class WheelHistoryResource:
    """``GET /wheels/history?limit=&wheel_name=&action=``: publish, delete and pin events,
    newest first."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        require_reader(req, self.services.settings, "read the plugin registry history")
        raw_limit = req.get_param("limit") or str(HISTORY_LIMIT_DEFAULT)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= HISTORY_LIMIT_MAX:
            raise invalid(
                f"invalid query: limit must be 1..{HISTORY_LIMIT_MAX}",
                [{"field": "limit", "message": f"1..{HISTORY_LIMIT_MAX}"}],
            )
        try:
            resp.media = await _registry(self.services).history(
                int(raw_limit),
                req.get_param("wheel_name") or None,
                req.get_param("action"),  # an empty ``action=`` names no action: 422
            )
        except ValueError as exc:
            raise invalid(
                f"invalid query: {exc}", [{"field": "action", "message": str(exc)}]
            ) from None


class WheelResource:
    """``GET /wheels/{name}`` (the wheel's bytes) and ``DELETE /wheels/{name}`` (operators;
    workers go back to the pinned or previous version between runs)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        require_reader(req, self.services.settings, "download plugin wheels")
        try:
            data = await _registry(self.services).download(name)
        except WheelNotFound as exc:
            raise _not_found(exc) from None
        resp.content_type = "application/octet-stream"
        resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
        resp.data = data

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str
    ) -> None:
        require_operator(req, self.services.settings, "delete plugin wheels")
        try:
            resp.media = await _registry(self.services).delete(name, actor_of(req))
        except WheelNotFound as exc:
            raise _not_found(exc) from None
        except VersionConflict as exc:
            raise ApiError(409, VERSION_CONFLICT, str(exc)) from None


class WheelPinResource:
    """``POST /wheels/pin`` ``{"distribution": NAME, "version": V}``: workers run version V of
    NAME until the pin is removed (``"version": null``)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        settings = self.services.settings
        require_operator(req, settings, "pin plugin versions")
        body = await read_json(req, settings)
        distribution = body.get("distribution") if isinstance(body, dict) else None
        version = body.get("version") if isinstance(body, dict) else None
        if not isinstance(distribution, str) or not distribution.strip():
            raise invalid(
                "the body needs 'distribution' (a name)",
                [{"field": "distribution", "message": "required"}],
            )
        if version is not None and not isinstance(version, str):
            raise invalid(
                "'version' must be a string or null", [{"field": "version", "message": "type"}]
            )
        try:
            resp.media = await _registry(self.services).pin(
                distribution.strip(), version, actor_of(req)
            )
        except WheelNotFound as exc:
            raise _not_found(exc) from None
        except VersionConflict as exc:
            raise ApiError(409, VERSION_CONFLICT, str(exc)) from None
        resp.status = falcon.HTTP_200
