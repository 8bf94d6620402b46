"""``pyoco-server-admin api-key`` as a user runs it: a subprocess against a real nats-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pyoco_server.api_keys import ApiKeyRejected, ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings
from pyoco_server.embedded import free_port
from pyoco_server.testing import process_env

PEPPER = "admin-cli-pepper-0123456789"


@pytest.fixture
def admin_env(settings: Settings) -> dict[str, str]:
    return process_env(
        env={
            "PYOCO_NATS_URL": settings.nats_url or "",
            "PYOCO_AUTH_KV_BUCKET": settings.auth_kv_bucket,
            "PYOCO_AUTH_PEPPER": PEPPER,
        }
    )


def admin(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_create_list_revoke_round_trip(admin_env, settings: Settings, nc):
    empty = admin(admin_env, "api-key", "list")
    assert (empty.returncode, json.loads(empty.stdout)) == (0, []), empty.stderr
    assert empty.stdout.strip() == "[]"

    created = admin(admin_env, "api-key", "create", "--tenant", "acme", "--label", "ci")
    assert created.returncode == 0, created.stderr
    document = json.loads(created.stdout)
    api_key = document["api_key"]
    assert api_key.startswith(f"pyoco_{document['key_id']}.")
    assert (document["tenant_id"], document["label"], document["revoked_at"]) == (
        "acme",
        "ci",
        None,
    )
    assert api_key not in created.stderr and PEPPER not in created.stderr
    assert "shown only once" in created.stderr

    kv = await open_auth_kv(nc.jetstream(timeout=5.0), settings)

    async def get_kv():
        return kv

    gateway = ApiKeyStore(get_kv, PEPPER.encode())
    assert (await gateway.verify(api_key)).tenant_id == "acme", "CLI and gateway must agree"

    listed = admin(admin_env, "api-key", "list")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [record["key_id"] for record in records] == [document["key_id"]]
    assert set(records[0]) == {
        "key_id",
        "tenant_id",
        "label",
        "role",
        "created_at",
        "revoked_at",
        "pepper",
    }
    assert records[0]["pepper"] == "peppered"
    assert records[0]["role"] == "submitter"  # keys are submitters unless made operators
    assert api_key not in listed.stdout and "hash" not in listed.stdout

    revoked = admin(admin_env, "api-key", "revoke", "--key-id", document["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = json.loads(revoked.stdout)["revoked_at"]
    assert revoked_at is not None
    with pytest.raises(ApiKeyRejected):
        await gateway.verify(api_key)
    again = admin(admin_env, "api-key", "revoke", "--key-id", document["key_id"])
    assert (again.returncode, json.loads(again.stdout)["revoked_at"]) == (0, revoked_at)
    other_tenant = admin(admin_env, "api-key", "list", "--tenant", "globex")
    assert json.loads(other_tenant.stdout) == []


def test_revoking_an_unknown_key_exits_1_naming_the_error(admin_env):
    result = admin(admin_env, "api-key", "revoke", "--key-id", "0123456789abcdef")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ERR-PYOCO-0018" in lines[0] and "0123456789abcdef" in lines[0]
    assert result.stdout == ""


def test_bad_tenant_is_a_usage_error(admin_env):
    result = admin(admin_env, "api-key", "create", "--tenant", "no.dots")
    assert result.returncode == 2
    assert "invalid tenant" in result.stderr


async def test_create_without_pepper_works_and_bind_pepper_keeps_the_key(admin_env, nc, settings):
    result = admin({**admin_env, "PYOCO_AUTH_PEPPER": ""}, "api-key", "create", "--tenant", "t")
    assert result.returncode == 0, result.stderr
    assert "PYOCO_AUTH_PEPPER is not set" in result.stderr
    api_key = json.loads(result.stdout)["api_key"]
    listed = json.loads(admin({**admin_env, "PYOCO_AUTH_PEPPER": ""}, "api-key", "list").stdout)
    assert [record["pepper"] for record in listed] == ["unpeppered"]

    kv = await open_auth_kv(nc.jetstream(timeout=5.0), settings)

    async def get_kv():
        return kv

    async def verify(pepper: str) -> str:
        return (await ApiKeyStore(get_kv, pepper.encode()).verify(api_key)).tenant_id

    assert await verify("") == "t"
    with pytest.raises(ApiKeyRejected) as refused:
        await verify(PEPPER)
    assert refused.value.reason == "unbound", "a pepper gateway refuses an unbound record"
    bound = admin(admin_env, "api-key", "bind-pepper")
    assert bound.returncode == 0, bound.stderr
    assert [record["tenant_id"] for record in json.loads(bound.stdout)] == ["t"]
    assert json.loads(admin(admin_env, "api-key", "bind-pepper").stdout) == []
    assert await verify(PEPPER) == "t", "a bound key works with the pepper"
    assert await verify("") == "t", "and still without it"

    short = admin({**admin_env, "PYOCO_AUTH_PEPPER": "short"}, "api-key", "create", "--tenant", "t")
    assert short.returncode == 1
    assert "ERR-PYOCO-0013" in short.stderr and "PYOCO_AUTH_PEPPER" in short.stderr
    unset = admin({**admin_env, "PYOCO_AUTH_PEPPER": ""}, "api-key", "bind-pepper")
    assert unset.returncode == 1 and "PYOCO_AUTH_PEPPER" in unset.stderr


def test_unreachable_nats_fails_fast_with_err_0003(admin_env):
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = admin(admin_env, "--nats-url", url, "api-key", "list", timeout=20)
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ERR-PYOCO-0003" in lines[0], result.stderr
    assert url.split("//")[1] in lines[0]
