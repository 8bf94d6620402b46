"""The /wheels routes on a real gateway, with auth on (operator vs submitter) and off."""

from __future__ import annotations

import json

import httpx
import pytest
from regsystem import PEPPER, admin_key, client_cli, publish, registry_env

from pyoco_server.client import PyocoHttpClient, PyocoHttpError
from pyoco_server.testing import start_system


def _error(call) -> PyocoHttpError:
    with pytest.raises(PyocoHttpError) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def auth_gateway(nats_server, tmp_path_factory):
    env = registry_env(PYOCO_HTTP_AUTH_MODE="api_key", PYOCO_AUTH_PEPPER=PEPPER)
    system = start_system(
        nats_server.url, tmp_path_factory.mktemp("auth-gw"), env=env, worker=False
    )
    try:
        yield system, env
    finally:
        system.stop()


def test_only_operator_keys_change_the_registry(
    auth_gateway, nats_server, plugin_wheels, trusted_key
):
    system, env = auth_gateway
    operator = PyocoHttpClient(system.url, api_key=admin_key(nats_server.url, env, "operator"))
    submitter_key = admin_key(nats_server.url, env, "submitter")
    submitter = PyocoHttpClient(system.url, api_key=submitter_key)

    refused = _error(lambda: publish(submitter, plugin_wheels.policy, trusted_key))
    assert (refused.status, refused.err_id) == (403, "ERR-PYOCO-0040")
    assert "operator" in refused.detail
    cli = client_cli(
        system.url,
        "wheel-upload",
        "--wheel-file",
        str(plugin_wheels.policy),
        api_key=submitter_key,
    )
    assert cli.returncode == 1 and "ERR-PYOCO-0040" in cli.stderr

    stored = publish(operator, plugin_wheels.policy, trusted_key, tags=["gpu"])
    assert stored["publisher"]["role"] == "operator" and stored["tags"] == ["gpu"]
    assert [w["name"] for w in submitter.list_wheels()] == [plugin_wheels.policy.name]
    for call in (
        lambda: submitter.delete_wheel(plugin_wheels.policy.name),
        lambda: submitter.pin_wheel("pyoco-team-policy", "0.1.0"),
        lambda: submitter.list_wheel_history(),
        lambda: submitter.download_wheel(plugin_wheels.policy.name),
    ):
        assert _error(call).status == 403
    assert operator.download_wheel(plugin_wheels.policy.name) == plugin_wheels.policy.read_bytes()

    again = _error(lambda: publish(operator, plugin_wheels.policy, trusted_key))
    assert (again.status, again.err_id) == (409, "ERR-PYOCO-0041")
    assert operator.pin_wheel("pyoco-team-policy", "0.1.0")["pinned"] == "0.1.0"
    assert _error(lambda: operator.pin_wheel("pyoco-team-policy", "9.9")).status == 404
    assert operator.delete_wheel(plugin_wheels.policy.name) == {
        "name": plugin_wheels.policy.name,
        "deleted": True,
    }
    assert _error(lambda: operator.delete_wheel(plugin_wheels.policy.name)).status == 404
    history = operator.list_wheel_history()
    assert [e["action"] for e in history] == ["delete", "pin", "upload"]
    assert {e["actor"]["role"] for e in history} == {"operator"}
    assert all(e["actor"]["api_key_id"] and e["sha256_hex"] for e in history)
    without_key = httpx.get(f"{system.url}/wheels")
    assert without_key.status_code == 401


def test_bad_uploads_get_4xx_with_the_reason(auth_gateway, nats_server, plugin_wheels):
    system, env = auth_gateway
    key = admin_key(nats_server.url, env, "operator")
    headers = {"X-API-Key": key}
    url = f"{system.url}/wheels"
    wheel = plugin_wheels.retry_backoff
    cases = [
        ({"wheel": ("evil.zip", b"PK", "application/zip")}, {}, 422, "ERR-PYOCO-0042"),
        ({"wheel": (wheel.name, b"not a zip", "x/y")}, {}, 422, "ERR-PYOCO-0042"),
        ({"wheel": (wheel.name, wheel.read_bytes(), "x/y")}, {"tags": "a.b"}, 422, None),
        ({"wheel": (wheel.name, wheel.read_bytes(), "x/y")}, {"signature": "{}"}, 422, None),
        ({}, {"tags": "a"}, 422, None),
    ]
    for files, data, status, err_id in cases:
        response = httpx.post(url, headers=headers, files=files or None, data=data)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["err_id"] == (err_id or "ERR-PYOCO-0002") and body["detail"]
    problems = httpx.post(
        url, headers=headers, files={"wheel": (wheel.name, b"not a zip", "x/y")}
    ).json()["problems"]
    assert problems == ["the file is not a zip archive"]
    assert client_cli(system.url, "plugins", "history", "--limit", "0", api_key=key).returncode
    assert httpx.get(f"{url}/history?limit=0", headers=headers).status_code == 422
    assert httpx.get(f"{url}/history?action=explode", headers=headers).status_code == 422


def test_without_auth_publishing_needs_the_explicit_opt_in(nats_server, plugin_wheels, tmp_path):
    with start_system(nats_server.url, tmp_path / "a", env=registry_env(), worker=False) as closed:
        refused = _error(lambda: publish(closed.client, plugin_wheels.policy, None))
        assert (refused.status, refused.err_id) == (403, "ERR-PYOCO-0040")
        assert "--allow-plugin-publish-without-auth" in refused.detail
        assert closed.client.list_wheels() == []
    env = registry_env(PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH="true")
    with start_system(nats_server.url, tmp_path / "b", env=env, worker=False) as opened:
        result = client_cli(opened.url, "plugins", "publish", str(plugin_wheels.policy))
        assert result.returncode == 0, result.stderr
        assert "unsigned" in result.stderr  # the client warns: no worker will install it
        assert json.loads(result.stdout)["signed"] is False
        refused = client_cli(
            opened.url, "plugins", "publish", str(plugin_wheels.policy), "--preflight", "off"
        )
        assert refused.returncode == 1 and "ERR-PYOCO-0041" in refused.stderr
