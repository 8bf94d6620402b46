"""The dashboard's page and files as the gateway serves them, and GET /plugins."""

from __future__ import annotations

import re
from importlib import resources

from falcon.testing import ASGIConductor
from gwtools import assert_error

from pyoco_server.config import Settings
from pyoco_server.gateway.app import create_app
from pyoco_server.gateway.dashboard import CONFIG_PATH, PUBLIC_PATHS, asset_names
from pyoco_server.plugins import build_plugin_manager

UI = resources.files("pyoco_server.gateway").joinpath("ui")


async def test_page_and_files_are_served_from_package_data_with_security_headers(gateway):
    page = await gateway.simulate_get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == UI.joinpath("index.html").read_bytes()
    policy = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "require-trusted-types-for 'script'",
    ):
        assert directive in policy
    assert "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = await gateway.simulate_get("/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == policy
    style = await gateway.simulate_get("/ui/style.css")
    assert style.headers["content-type"].startswith("text/css")

    again = await gateway.simulate_get(
        "/ui/app.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content


async def test_no_inline_script_or_style_and_no_html_sinks_in_the_page():
    html = UI.joinpath("index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/ui/app.js">']
    assert "<style" not in html
    assert not re.search(r"\s(style|on[a-z]+)\s*=", html), "inline style or event handler"
    for name in asset_names():
        if name.endswith(".js"):
            source = UI.joinpath(name).read_text()
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                assert sink not in source, (name, sink)
            assert "localStorage" not in source, name


async def test_only_shipped_files_are_served(gateway):
    assert_error(await gateway.simulate_get("/ui/nope.js"), 404, "ERR-PYOCO-0020")
    assert_error(await gateway.simulate_get("/ui/..%2Fdashboard.py"), 404, "ERR-PYOCO-0020")
    assert_error(await gateway.simulate_get("/ui/../app.py"), 404, "ERR-PYOCO-0020")


async def test_config_names_the_key_header_and_auth_mode(gateway_settings: Settings):
    settings = gateway_settings.with_overrides(
        http_api_key_header="X-Pyoco-Token", dashboard_lang="ja"
    )
    async with ASGIConductor(create_app(settings, build_plugin_manager(plugins=[]))) as client:
        config = await client.simulate_get(CONFIG_PATH)
    assert config.json == {
        "auth_mode": "none",
        "api_key_header": "X-Pyoco-Token",
        "version": config.json["version"],
        "dashboard_lang": "ja",
    }
    assert config.headers["cache-control"] == "no-store"


async def test_plugins_lists_what_the_gateway_loaded(gateway_settings: Settings):
    pm = build_plugin_manager()
    async with ASGIConductor(create_app(gateway_settings, pm)) as client:
        listed = (await client.simulate_get("/plugins")).json
    assert [plugin["name"] for plugin in listed] == list(pm.infos)
    yaml_policy = next(plugin for plugin in listed if plugin["name"] == "yaml_policy")
    assert yaml_policy["hooks"] == ["pyoco_check_workflow_yaml"]
    assert yaml_policy["source"] == "built-in" and yaml_policy["version"]


def test_public_paths_are_exactly_the_page_config_and_shipped_files():
    shipped = {f"/ui/{name}" for name in asset_names()}
    assert {"/", CONFIG_PATH} | shipped == PUBLIC_PATHS
    assert {"/ui/app.js", "/ui/style.css", "/ui/index.html"} <= shipped
