"""The operators' dashboard: the page at ``GET /`` and its static files under ``/ui/``.

The dashboard is plain HTML, CSS and JavaScript modules kept in ``pyoco_server/gateway/ui/``
(package data: nothing is built at install time). The page reads the same HTTP API as every
other client, from the browser, with the API key the operator types in.

Every dashboard response carries a strict Content-Security-Policy: scripts, styles and fetches
only from this origin, no inline code, no framing, and Trusted Types enforced so that no HTML
string can ever reach an injection sink such as ``innerHTML`` — the page renders server values
as text only.

The page, its files and ``/ui/config.json`` (the API key header name and the auth mode, both
also told by every 401) hold no data, so they are served without an API key
(:data:`PUBLIC_PATHS`, added to the auth middleware's open set): a sign-in prompt that needs a
key to load would be useless. Every API call the page makes carries the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import falcon
import falcon.asgi

from .. import __version__
from ..config import Settings
from .error_responses import NO_SUCH_ENDPOINT, ApiError

#: Where the dashboard's files live inside the package.
ASSET_PACKAGE = "pyoco_server.gateway"
ASSET_FOLDER = "ui"
INDEX_FILE = "index.html"
CONFIG_PATH = "/ui/config.json"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _suffix(name: str) -> str:
    return name[name.rfind(".") :] if "." in name else ""


def asset_names() -> tuple[str, ...]:
    """The files served under ``/ui/`` (every file of the folder with a known type)."""
    folder = resources.files(ASSET_PACKAGE).joinpath(ASSET_FOLDER)
    return tuple(
        sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_file() and _suffix(entry.name) in CONTENT_TYPES
        )
    )


#: Paths served without an API key: the page, its static files and its configuration.
PUBLIC_PATHS = frozenset({"/", CONFIG_PATH, *(f"/ui/{name}" for name in asset_names())})


@dataclass(frozen=True)
class Asset:
    """One static file, read once at start-up."""

    body: bytes
    content_type: str
    etag: str  # without the quotes


def load_assets() -> dict[str, Asset]:
    """Every dashboard file by name, with its content type and a content hash as ETag."""
    folder = resources.files(ASSET_PACKAGE).joinpath(ASSET_FOLDER)
    assets = {}
    for name in asset_names():
        body = folder.joinpath(name).read_bytes()
        etag = hashlib.sha256(body).hexdigest()[:32]
        assets[name] = Asset(body, CONTENT_TYPES[_suffix(name)], etag)
    return assets


def _secure(resp: falcon.asgi.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        resp.set_header(name, value)


def _send(req: falcon.asgi.Request, resp: falcon.asgi.Response, asset: Asset) -> None:
    _secure(resp)
    resp.set_header("Cache-Control", "no-cache")
    resp.etag = asset.etag
    resp.content_type = asset.content_type
    if any(tag == asset.etag or tag == "*" for tag in req.if_none_match or ()):
        resp.status = falcon.HTTP_304
        return
    resp.data = asset.body


class DashboardPageResource:
    """``GET /``: the dashboard page."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.page = assets[INDEX_FILE]

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        _send(req, resp, self.page)


class DashboardAssetResource:
    """``GET /ui/{name}``: a static file of the dashboard (only the files shipped with it)."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        asset = self.assets.get(name)
        if asset is None:
            raise ApiError(404, NO_SUCH_ENDPOINT, f"no dashboard file {name!r}")
        _send(req, resp, asset)


class DashboardConfigResource:
    """``GET /ui/config.json``: what the page needs to know before its first API call — the
    auth mode, the name of the API key header (``PYOCO_HTTP_API_KEY_HEADER``) and the
    dashboard's language (``PYOCO_DASHBOARD_LANG``: ``auto``, ``ja`` or ``en``)."""

    def __init__(self, settings: Settings) -> None:
        self.config = {
            "auth_mode": settings.http_auth_mode,
            "api_key_header": settings.http_api_key_header,
            "version": __version__,
            "dashboard_lang": settings.dashboard_lang,
        }

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        _secure(resp)
        resp.set_header("Cache-Control", "no-store")
        resp.media = self.config


def install_dashboard(app: falcon.asgi.App, settings: Settings) -> None:
    """Add the dashboard's routes to ``app``."""
    assets = load_assets()
    app.add_route("/", DashboardPageResource(assets))
    app.add_route(CONFIG_PATH, DashboardConfigResource(settings))
    app.add_route("/ui/{name}", DashboardAssetResource(assets))
