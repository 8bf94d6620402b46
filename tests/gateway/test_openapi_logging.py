"""The OpenAPI document covers the app exactly; errors are logged without bodies or keys."""

from __future__ import annotations

import io
import json

import structlog
from falcon import inspect
from gwtools import assert_error, multipart, start_gateway
from openapi_spec_validator import validate

from pyoco_server.config import Settings
from pyoco_server.gateway.app import create_app
from pyoco_server.gateway.openapi import openapi_document
from pyoco_server.hookspecs import hookimpl
from pyoco_server.log import configure_logging
from pyoco_server.plugins import build_plugin_manager


def app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings(), build_plugin_manager(plugins=[]))
    return {
        (route.path, method.method.lower())
        for route in inspect.inspect_routes(app)
        for method in route.methods
        if not method.internal
    }


def test_openapi_document_is_valid_and_matches_every_route():
    document = openapi_document()
    validate(document)
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == app_operations()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # Answered without NATS and without a key: probes, this document, the dashboard.
            if path not in ("/health", "/openapi.json", "/", "/ui/config.json"):
                assert "503" in operation["responses"], (path, method)


async def test_openapi_is_served(gateway):
    result = await gateway.simulate_get("/openapi.json")
    assert result.status_code == 200
    assert result.json["paths"].keys() == openapi_document()["paths"].keys()


def log_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def test_errors_are_logged_with_ids_but_never_bodies_or_keys(gateway_settings):
    stream = io.StringIO()
    configure_logging(gateway_settings, "pyoco-server:http", stream=stream)
    secret_key = "pyoco_k1.very-secret-value"
    try:
        async with start_gateway(gateway_settings) as gateway:
            result = await gateway.simulate_post(
                "/runs",
                json={"flow_name": "x", "params": ["password-in-body"]},
                headers={"X-API-Key": secret_key},
            )
            assert_error(result, 422, "ERR-PYOCO-0002")
            await gateway.simulate_get("/runs/unknown")
    finally:
        structlog.reset_defaults()
    text = stream.getvalue()
    assert "password-in-body" not in text and secret_key not in text
    errors = [line for line in log_lines(stream) if line["event"] == "http_error"]
    assert [(e["status"], e["err_id"], e["method"], e["path"]) for e in errors] == [
        (422, "ERR-PYOCO-0002", "POST", "/runs"),
        (404, "ERR-PYOCO-0005", "GET", "/runs/unknown"),
    ]
    assert all(e["level"] == "warning" and e["service"] == "pyoco-server:http" for e in errors)


async def test_an_unexpected_failure_is_a_logged_500_without_internals(gateway_settings):
    class Broken:
        @hookimpl
        def pyoco_check_workflow_yaml(self, document, raw, context):
            raise RuntimeError("plugin bug with internal detail")

    pm = build_plugin_manager(plugins=[])
    pm.register(Broken(), name="broken")
    stream = io.StringIO()
    configure_logging(gateway_settings, "pyoco-server:http", stream=stream)
    try:
        async with start_gateway(gateway_settings, pm) as gateway:
            raw = b"version: 1\nflow: {graph: a}\ntasks: {a: {callable: 'tests.flows.x:a'}}\n"
            result = await gateway.simulate_post("/runs/yaml", **multipart(raw, flow_name="d"))
    finally:
        structlog.reset_defaults()
    body = assert_error(result, 500, "ERR-PYOCO-0022")
    assert "internal detail" not in result.text and "Traceback" not in result.text
    (error,) = [line for line in log_lines(stream) if line["event"] == "http_error"]
    assert error["level"] == "error" and error["path"] == "/runs/yaml"
    assert error["exception"][-1]["exc_type"] == "RuntimeError"
    assert body["detail"] == "internal server error"
