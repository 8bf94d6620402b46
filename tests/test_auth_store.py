"""API key records in real NATS KV: creation, verification, revocation, the bounded cache."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time

import pytest

from pyoco_server.api_keys import (
    ApiKeyNotFound,
    ApiKeyRejected,
    ApiKeyStore,
    AuthBackendUnavailable,
    InvalidKeyRequest,
    RecordCache,
    open_auth_kv,
    parse_api_key,
)
from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.errors import ConfigError
from pyoco_server.log import configure_logging
from pyoco_server.nats_client import NatsConnection

PEPPER = "test-pepper-0123456789abcdef"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.with_overrides(auth_pepper=PEPPER, http_auth_mode="api_key")


@pytest.fixture
async def kv(nc, auth_settings: Settings):
    return await open_auth_kv(nc.jetstream(timeout=5.0), auth_settings)


def make_store(kv, pepper: str = PEPPER, cache: RecordCache | None = None) -> ApiKeyStore:
    async def get_kv():
        return kv

    return ApiKeyStore(get_kv, pepper.encode(), cache)


async def stored_bytes(kv) -> bytes:
    """Every value currently in the bucket, concatenated."""
    values = []
    for name in await kv.keys():
        values.append((await kv.get(name)).value)
    return b"\n".join(values)


async def test_created_key_has_the_documented_shape_and_only_a_hash_is_stored(kv):
    store = make_store(kv)
    api_key, record = await store.create("acme", label="ci runner")
    key_id, secret = parse_api_key(api_key)
    assert api_key == f"pyoco_{key_id}.{secret}"
    assert len(base64.urlsafe_b64decode(secret + "=")) * 8 >= 256
    assert (record.key_id, record.tenant_id, record.label) == (key_id, "acme", "ci runner")
    assert record.revoked_at is None and abs(record.created_at - time.time()) < 60
    stored = await stored_bytes(kv)
    assert secret.encode() not in stored and api_key.encode() not in stored
    assert PEPPER.encode() not in stored
    document = json.loads((await kv.get(f"keys.{key_id}")).value)
    assert set(document) == {
        "key_id",
        "tenant_id",
        "label",
        "created_at",
        "revoked_at",
        "secret_hash",
        "hash_alg",
        "role",
    }
    assert document["role"] == "submitter"
    assert document["hash_alg"] == "hmac-sha256" and len(document["secret_hash"]) == 64
    other_key, _ = await store.create("acme")
    assert other_key != api_key


async def test_keys_without_a_pepper_need_binding_before_a_pepper_gateway_accepts_them(kv):
    plain = make_store(kv, pepper="")
    api_key, record = await plain.create("acme")
    document = json.loads((await kv.get(f"keys.{record.key_id}")).value)
    assert document["hash_alg"] == "sha256" and "bound_hash" not in document
    assert (await plain.verify(api_key)).tenant_id == "acme"
    with pytest.raises(ApiKeyRejected) as info:
        await make_store(kv).verify(api_key)
    assert info.value.reason == "unbound"
    # A record forged by someone who can write the bucket but lacks the pepper stays refused.
    forged_key = f"pyoco_{'e' * 16}.{'B' * 43}"
    forged = json.dumps(
        {
            **document,
            "key_id": "e" * 16,
            "secret_hash": hashlib.sha256(forged_key.encode()).hexdigest(),
            "bound_hash": "0" * 64,
        }
    )
    await kv.put(f"keys.{'e' * 16}", forged.encode())
    assert [r.key_id for r in await make_store(kv).bind_pepper()] == [record.key_id]
    assert await make_store(kv).bind_pepper() == [], "idempotent"
    assert (await make_store(kv).verify(api_key)).tenant_id == "acme"
    assert (await plain.verify(api_key)).tenant_id == "acme"
    with pytest.raises(ApiKeyRejected):
        await make_store(kv).verify(forged_key)
    with pytest.raises(ApiKeyRejected) as info:
        await make_store(kv, pepper="another-pepper-0123456789").verify(api_key)
    assert info.value.reason == "mismatch"
    peppered_key, _ = await make_store(kv).create("acme")
    with pytest.raises(ApiKeyRejected) as info:
        await plain.verify(peppered_key)
    assert info.value.reason == "needs_pepper"


async def test_valid_key_verifies_to_its_tenant(kv):
    store = make_store(kv)
    api_key, record = await store.create("tenant-a")
    identity = await store.verify(api_key)
    assert (identity.tenant_id, identity.key_id) == ("tenant-a", record.key_id)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "pyoco_",
        "not-a-key",
        "Bearer pyoco_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pyoco_0123456789ABCDEF.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pyoco_0123456789abcdef.short",
        "pyoco_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
        "pyoco_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\u00e9",
        "pyoco_0123456789abcde.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
async def test_malformed_keys_are_rejected_without_a_lookup(presented: str):
    async def no_kv():
        raise AssertionError("a malformed key must not reach the key store")

    with pytest.raises(ApiKeyRejected) as info:
        await ApiKeyStore(no_kv, PEPPER.encode()).verify(presented)
    assert info.value.reason == "malformed" and info.value.err_id == "ERR-PYOCO-0015"


async def test_unknown_wrong_secret_wrong_pepper_and_revoked_keys_are_rejected(kv):
    store = make_store(kv)
    api_key, record = await store.create("acme")
    key_id, secret = parse_api_key(api_key)
    unknown = f"pyoco_{'f' * 16}.{secret}"
    forged = f"pyoco_{key_id}.{'A' * 43}"
    cases = [(store, unknown, "unknown"), (store, forged, "mismatch")]
    cases.append((make_store(kv, pepper="another-pepper-0123456789"), api_key, "mismatch"))
    for verifier, presented, reason in cases:
        with pytest.raises(ApiKeyRejected) as info:
            await verifier.verify(presented)
        assert info.value.reason == reason
    await store.revoke(record.key_id)
    with pytest.raises(ApiKeyRejected) as info:
        await store.verify(api_key)
    assert info.value.reason == "revoked"


async def test_revoke_is_idempotent_and_unknown_keys_are_not_found(kv):
    store = make_store(kv)
    _, record = await store.create("acme")
    first = await store.revoke(record.key_id)
    assert first.revoked_at is not None
    again = await store.revoke(record.key_id)
    assert again.revoked_at == first.revoked_at
    for key_id in ("0123456789abcdef", "not a key id", "keys.>"):
        with pytest.raises(ApiKeyNotFound) as info:
            await store.revoke(key_id)
        assert info.value.err_id == "ERR-PYOCO-0018"


async def test_list_is_empty_then_oldest_first_without_hashes(kv):
    store = make_store(kv)
    assert await store.list() == []
    _, first = await store.create("acme")
    _, second = await store.create("globex", label="nightly")
    await store.revoke(first.key_id)
    records = await store.list()
    assert [record.key_id for record in records] == [first.key_id, second.key_id]
    assert records[0].revoked
    assert [record.key_id for record in await store.list("globex")] == [second.key_id]
    assert "secret_hash" not in records[1].public()


async def test_invalid_tenant_or_label_is_refused(kv):
    store = make_store(kv)
    for tenant in ("", "a.b", "a" * 65, "tenant/x", "ten ant"):
        with pytest.raises(InvalidKeyRequest):
            await store.create(tenant)
    with pytest.raises(InvalidKeyRequest):
        await store.create("acme", label="x" * 201)
    with pytest.raises(InvalidKeyRequest):
        await store.create("acme", label="line\nbreak")
    assert await store.list() == []


async def test_revocation_reaches_a_caching_verifier_exactly_when_its_ttl_ends(kv):
    clock = FakeClock()
    gateway = make_store(kv, cache=RecordCache(ttl=5.0, clock=clock))
    admin = make_store(kv)
    api_key, record = await admin.create("acme")
    await gateway.verify(api_key)
    await admin.revoke(record.key_id)
    clock.now += 4.9
    assert (await gateway.verify(api_key)).tenant_id == "acme", "served from the cache"
    clock.now += 0.1
    with pytest.raises(ApiKeyRejected) as info:
        await gateway.verify(api_key)
    assert info.value.reason == "revoked"


async def test_disabled_cache_sees_revocation_at_once(kv):
    gateway = make_store(kv, cache=RecordCache(ttl=0))
    admin = make_store(kv)
    api_key, record = await admin.create("acme")
    await gateway.verify(api_key)
    await admin.revoke(record.key_id)
    with pytest.raises(ApiKeyRejected):
        await gateway.verify(api_key)
    assert len(gateway.cache) == 0


def test_record_cache_is_bounded_and_drops_least_recently_used():
    clock = FakeClock()
    cache = RecordCache(ttl=10, max_entries=2, clock=clock)
    cache.put("a", None)
    cache.put("b", None)
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", None)
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    clock.now += 10
    assert cache.get("a") is None and len(cache) == 1


async def test_corrupt_record_is_rejected_and_skipped_by_list(kv):
    store = make_store(kv)
    await kv.put("keys.0123456789abcdef", b"{not json")
    presented = f"pyoco_0123456789abcdef.{'A' * 43}"
    with pytest.raises(ApiKeyRejected) as info:
        await store.verify(presented)
    assert info.value.reason == "unknown"
    assert await store.list() == []


async def test_auth_settings_are_validated_without_revealing_the_pepper(settings: Settings):
    with pytest.raises(ConfigError) as info:
        settings.with_overrides(http_auth_mode="api_key", auth_pepper="short")
    assert info.value.name == "PYOCO_AUTH_PEPPER" and "short" not in str(info.value)
    assert Settings.from_env({"PYOCO_HTTP_AUTH_MODE": "api_key"}).auth_pepper == ""
    assert (
        Settings.from_env(
            {"PYOCO_HTTP_AUTH_MODE": "api_key", "PYOCO_AUTH_PEPPER": PEPPER}
        ).auth_pepper
        == PEPPER
    )
    assert PEPPER not in repr(settings.with_overrides(auth_pepper=PEPPER))
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"PYOCO_AUTH_CACHE_TTL_SEC": "-1"})
    assert info.value.name == "PYOCO_AUTH_CACHE_TTL_SEC"
    assert Settings.from_env({"PYOCO_AUTH_CACHE_TTL_SEC": "0"}).auth_cache_ttl_sec == 0


async def test_cached_keys_outlive_a_nats_outage_only_until_their_ttl(tmp_path, settings):
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    settings = settings.with_overrides(nats_url=server.url)
    connection = NatsConnection(settings, name="pytest-auth")
    await connection.start()
    try:
        assert await connection.wait_ready(10)
        clock = FakeClock()
        gateway = ApiKeyStore(
            lambda: connection.kv(settings.auth_kv_bucket),
            PEPPER.encode(),
            RecordCache(ttl=5.0, clock=clock),
        )
        api_key, _ = await gateway.create("acme")
        await gateway.verify(api_key)
        server.stop()
        assert (await gateway.verify(api_key)).tenant_id == "acme"
        clock.now += 5
        started = time.monotonic()
        with pytest.raises(AuthBackendUnavailable) as info:
            await gateway.verify(api_key)
        assert info.value.err_id == "ERR-PYOCO-0003"
        assert time.monotonic() - started < 6, "an outage must not hang verification"
        server.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (await gateway.verify(api_key)).tenant_id == "acme"
                break
            except AuthBackendUnavailable:
                assert time.monotonic() < deadline, "verification did not heal after NATS"
                await asyncio.sleep(0.2)
    finally:
        await connection.stop()
        server.stop()


@pytest.fixture
def captured_logs(auth_settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(auth_settings.with_overrides(log_level="DEBUG"), "test", stream=stream)
    return stream


async def test_keys_secrets_and_pepper_never_reach_logs(kv, captured_logs: io.StringIO):
    store = make_store(kv, cache=RecordCache(ttl=5))
    api_key, record = await store.create("acme", label="logged")
    _, secret = parse_api_key(api_key)
    await store.verify(api_key)
    attempts = [
        f"pyoco_{record.key_id}.{'B' * 43}",
        api_key + "x",
        f"pyoco_{'e' * 16}.{secret}",
        secret,
    ]
    for presented in attempts:
        with pytest.raises(ApiKeyRejected):
            await store.verify(presented)
    await store.revoke(record.key_id)
    with pytest.raises(ApiKeyRejected):
        await store.verify(api_key)
    logs = captured_logs.getvalue()
    assert "api_key_created" in logs and "api_key_revoked" in logs, logs
    assert record.key_id in logs
    stored_hash = json.loads((await kv.get(f"keys.{record.key_id}")).value)["secret_hash"]
    for secret_text in (api_key, secret, PEPPER, stored_hash):
        assert secret_text not in logs
