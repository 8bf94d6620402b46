"""API keys: creation, listing, revocation and verification against KV ``pyoco_auth``.

A key is ``pyoco_<key_id>.<secret>``: ``key_id`` (16 hex digits) names the record, ``secret`` is
43 URL-safe characters from :mod:`secrets` (256 bits). The plain key is returned once by
:meth:`ApiKeyStore.create` and never stored. The record under ``keys.<key_id>`` keeps a hash of
the whole key, by one of two schemes named in its ``hash_alg``:

* ``hmac-sha256`` — ``HMAC-SHA256(PYOCO_AUTH_PEPPER, key)``: keys created with a pepper;
* ``sha256`` — ``SHA-256(key)``: keys created without one. A later :meth:`ApiKeyStore.bind_pepper`
  adds ``bound_hash = HMAC-SHA256(pepper, SHA-256(key))`` (computed from the record alone), so
  the key keeps working once the gateways have the pepper.

Because the secret is high-entropy a plain or keyed hash is enough (no slow KDF): a stored hash
cannot be reversed, and verification costs microseconds. What a pepper adds is that write
access to the bucket alone does not let anyone mint a key: a gateway with a pepper accepts
only records whose hash needs the pepper (``hmac-sha256``, or ``sha256`` with ``bound_hash``).

Verified lookups go through :class:`RecordCache`: a record fetched from KV (or its absence) is
reused for at most ``PYOCO_AUTH_CACHE_TTL_SEC`` seconds, which is therefore the longest a revoked
key keeps working on a gateway that verified it just before the revocation.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from .config import MIN_PEPPER_CHARS, Settings
from .errors import ConfigError, PyocoServerError
from .log import get_logger
from .nats_client import kv_configs
from .stream_reader import kv_current

log = get_logger(__name__)

KEY_PREFIX = "pyoco_"
KEY_ID_HEX_DIGITS = 16
SECRET_BYTES = 32
#: A presented key must match this exactly (``token_urlsafe(32)`` is 43 characters).
API_KEY_PATTERN = re.compile(
    rf"pyoco_(?P<key_id>[0-9a-f]{{{KEY_ID_HEX_DIGITS}}})\.(?P<secret>[A-Za-z0-9_-]{{43}})",
    re.ASCII,
)
KEY_ID_PATTERN = re.compile(rf"[0-9a-f]{{{KEY_ID_HEX_DIGITS}}}", re.ASCII)
TENANT_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
MAX_LABEL_CHARS = 200
RECORD_PREFIX = "keys."
HASH_ALGORITHM = "hmac-sha256"
#: Roles of a key: submitters use runs; operators may also publish, delete and pin plugins.
ROLE_SUBMITTER = "submitter"
ROLE_OPERATOR = "operator"
ROLES = (ROLE_SUBMITTER, ROLE_OPERATOR)
#: The scheme of keys created without a pepper.
PLAIN_HASH_ALGORITHM = "sha256"
HASH_ALGORITHMS = (HASH_ALGORITHM, PLAIN_HASH_ALGORITHM)
#: Most key records a gateway keeps in memory; the least recently used are dropped first.
DEFAULT_CACHE_ENTRIES = 10_000
#: Longest wait for one key record: a read takes about a millisecond, so a slower one means NATS
#: is gone but the client has not noticed yet, and the caller should get 503 now.
LOOKUP_TIMEOUT_SEC = 2.0


class AuthBackendUnavailable(PyocoServerError):
    """The key store (NATS KV) cannot be reached, so a key can be neither checked nor changed."""

    number = 3


class ApiKeyRejected(PyocoServerError):
    """A presented key is malformed, unknown, does not match its record, or is revoked.

    ``reason`` (``malformed``, ``unknown``, ``mismatch``, ``revoked``, ``needs_pepper`` — a
    peppered record on a gateway without a pepper —, ``unbound`` — a record created without a
    pepper, on a gateway with one, before ``api-key bind-pepper``) is for logs only: every case
    gets the same answer, so a caller cannot probe which key ids exist.
    """

    number = 15

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        self.reason = reason
        self.key_id = key_id
        super().__init__(f"API key rejected ({reason})")


class ApiKeyNotFound(PyocoServerError):
    """An administrative operation named a key id that has no record."""

    number = 18

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"API key {key_id!r} not found; see the key ids with: pyoco-server-admin api-key list"
        )


class InvalidKeyRequest(PyocoServerError):
    """A tenant name or label that cannot be stored."""

    number = 2


@dataclass(frozen=True)
class ApiKeyIdentity:
    """Who a verified key speaks for."""

    key_id: str
    tenant_id: str
    role: str = ROLE_SUBMITTER


@dataclass(frozen=True)
class ApiKeyRecord:
    """One stored key: identity, lifecycle and the keyed hash (never the key itself)."""

    key_id: str
    tenant_id: str
    created_at: float
    secret_hash: str
    revoked_at: float | None = None
    label: str | None = None
    hash_alg: str = HASH_ALGORITHM
    role: str = ROLE_SUBMITTER
    bound_hash: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict[str, Any]:
        """The record as shown to administrators: everything but the hash."""
        return {
            "key_id": self.key_id,
            "tenant_id": self.tenant_id,
            "label": self.label,
            "role": self.role,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    @property
    def pepper_scheme(self) -> str:
        """``peppered``, ``unpeppered`` or ``bound`` (unpeppered, then bound to a pepper)."""
        if self.hash_alg == HASH_ALGORITHM:
            return "peppered"
        return "bound" if self.bound_hash else "unpeppered"

    def encode(self) -> bytes:
        document = asdict(self)
        if document["bound_hash"] is None:
            del document["bound_hash"]
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> ApiKeyRecord:
        """Parse a stored record; raise ``ValueError`` when it is not one."""
        try:
            raw = json.loads(data)
            record = cls(
                key_id=raw["key_id"],
                tenant_id=raw["tenant_id"],
                created_at=float(raw["created_at"]),
                secret_hash=raw["secret_hash"],
                revoked_at=None if raw.get("revoked_at") is None else float(raw["revoked_at"]),
                label=raw.get("label"),
                hash_alg=raw.get("hash_alg", HASH_ALGORITHM),
                role=raw.get("role") or ROLE_SUBMITTER,
                bound_hash=raw.get("bound_hash"),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not an API key record: {type(exc).__name__}") from None
        if (
            not isinstance(record.secret_hash, str)
            or record.hash_alg not in HASH_ALGORITHMS
            or not isinstance(record.bound_hash, (str, type(None)))
        ):
            raise ValueError("not an API key record: unsupported hash")
        return record


def parse_api_key(presented: str) -> tuple[str, str]:
    """Split ``pyoco_<key_id>.<secret>`` into ``(key_id, secret)``; raise on any other shape."""
    match = API_KEY_PATTERN.fullmatch(presented)
    if match is None:
        raise ApiKeyRejected("malformed")
    return match["key_id"], match["secret"]


def validate_tenant(tenant_id: str) -> str:
    """Return ``tenant_id`` when it matches ``^[A-Za-z0-9_-]{1,64}$``."""
    if not isinstance(tenant_id, str) or not TENANT_PATTERN.fullmatch(tenant_id):
        raise InvalidKeyRequest(
            f"invalid tenant {tenant_id!r}: use 1 to 64 letters, digits, '_' or '-'"
        )
    return tenant_id


def validate_label(label: str | None) -> str | None:
    """Return ``label`` when it is printable text of at most 200 characters (or None)."""
    if label is None:
        return None
    if len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise InvalidKeyRequest(
            f"invalid label: use at most {MAX_LABEL_CHARS} printable characters"
        )
    return label


def pepper_of(settings: Settings, required: bool = False) -> bytes:
    """The pepper as bytes (``b""`` when none is set); a :class:`ConfigError` when one is set
    but too short to be a secret, or when ``required`` and none is set."""
    if (settings.auth_pepper or required) and len(settings.auth_pepper) < MIN_PEPPER_CHARS:
        raise ConfigError(
            "PYOCO_AUTH_PEPPER",
            f"<{len(settings.auth_pepper)} characters, hidden>",
            f"a secret of at least {MIN_PEPPER_CHARS} characters, the same for "
            "pyoco-server-admin and every gateway",
        )
    return settings.auth_pepper.encode("utf-8")


def keyed_hash(pepper: bytes, api_key: str) -> str:
    """``HMAC-SHA256(pepper, api_key)`` as hex; hashing the whole key binds it to its key id."""
    return hmac.new(pepper, api_key.encode("ascii"), hashlib.sha256).hexdigest()


def plain_hash(api_key: str) -> str:
    """``SHA-256(api_key)`` as hex: the hash of keys created without a pepper."""
    return hashlib.sha256(api_key.encode("ascii")).hexdigest()


def bound_hash(pepper: bytes, plain: str) -> str:
    """``HMAC-SHA256(pepper, plain hash)``: binds an unpeppered record to ``pepper``."""
    return hmac.new(pepper, plain.encode("ascii"), hashlib.sha256).hexdigest()


def _matches(record: ApiKeyRecord, pepper: bytes, presented: str) -> str | None:
    """``None`` when ``presented`` matches ``record`` under ``pepper``, else the reason."""
    if record.hash_alg == HASH_ALGORITHM:
        if not pepper:
            return "needs_pepper"
        expected, actual = record.secret_hash, keyed_hash(pepper, presented)
    elif pepper:
        if record.bound_hash is None:
            return "unbound"
        expected, actual = record.bound_hash, bound_hash(pepper, plain_hash(presented))
    else:
        expected, actual = record.secret_hash, plain_hash(presented)
    return None if hmac.compare_digest(expected, actual) else "mismatch"


@dataclass(frozen=True)
class _Cached:
    record: ApiKeyRecord | None
    expires_at: float


class RecordCache:
    """Key records (or their absence) by key id, each kept at most ``ttl`` seconds.

    Bounded to ``max_entries``; the least recently used entry goes first. ``ttl`` 0 disables
    caching. ``clock`` is ``time.monotonic`` except in tests.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, _Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_id: str) -> _Cached | None:
        """The live entry for ``key_id``, or None when absent or expired."""
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if self.clock() >= entry.expires_at:
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return entry

    def put(self, key_id: str, record: ApiKeyRecord | None) -> None:
        if self.ttl <= 0:
            return
        self._entries[key_id] = _Cached(record, self.clock() + self.ttl)
        self._entries.move_to_end(key_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key_id: str) -> None:
        self._entries.pop(key_id, None)


KvGetter = Callable[[], Awaitable[Any]]


class ApiKeyStore:
    """API key records in one KV bucket: create, list, revoke and verify.

    ``get_kv`` returns the bucket handle (e.g. ``lambda: nats.kv(bucket)`` on a gateway); any
    failure to reach the bucket surfaces as :class:`AuthBackendUnavailable`.
    """

    def __init__(
        self,
        get_kv: KvGetter,
        pepper: bytes,
        cache: RecordCache | None = None,
    ) -> None:
        self._get_kv = get_kv
        self._pepper = pepper
        self.cache = RecordCache(ttl=0) if cache is None else cache

    async def _kv(self) -> Any:
        try:
            return await self._get_kv()
        except Exception as exc:
            raise AuthBackendUnavailable(f"key store unavailable: {type(exc).__name__}") from None

    async def _fetch(self, key_id: str) -> tuple[ApiKeyRecord | None, int]:
        """The stored record of ``key_id`` and its revision (``(None, 0)`` when absent)."""
        kv = await self._kv()
        try:
            entry = await asyncio.wait_for(kv.get(RECORD_PREFIX + key_id), LOOKUP_TIMEOUT_SEC)
        except KeyNotFoundError:
            return None, 0
        except Exception as exc:
            raise AuthBackendUnavailable(f"key store unavailable: {type(exc).__name__}") from None
        try:
            return ApiKeyRecord.decode(entry.value), entry.revision
        except ValueError as exc:
            log.error("api_key_record_corrupt", key_id=key_id, error=str(exc))
            return None, entry.revision

    async def create(
        self, tenant_id: str, label: str | None = None, role: str = ROLE_SUBMITTER
    ) -> tuple[str, ApiKeyRecord]:
        """Store a new key for ``tenant_id`` with ``role``; return ``(plain key, record)``.

        The plain key exists only in the return value: show it once and forget it.
        """
        validate_tenant(tenant_id)
        validate_label(label)
        if role not in ROLES:
            raise InvalidKeyRequest(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
        kv = await self._kv()
        for _ in range(3):
            key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
            api_key = f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(SECRET_BYTES)}"
            record = ApiKeyRecord(
                key_id=key_id,
                tenant_id=tenant_id,
                created_at=time.time(),
                secret_hash=(
                    keyed_hash(self._pepper, api_key) if self._pepper else plain_hash(api_key)
                ),
                label=label,
                role=role,
                hash_alg=HASH_ALGORITHM if self._pepper else PLAIN_HASH_ALGORITHM,
            )
            try:
                await kv.create(RECORD_PREFIX + key_id, record.encode())
            except KeyWrongLastSequenceError:
                continue  # a key id collision (2^-64): draw another
            except Exception as exc:
                raise AuthBackendUnavailable(
                    f"key store unavailable: {type(exc).__name__}"
                ) from None
            self.cache.discard(key_id)
            log.info("api_key_created", key_id=key_id, tenant_id=tenant_id, role=role)
            return api_key, record
        raise AuthBackendUnavailable("could not allocate a free key id")

    async def list(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """Every stored record (optionally one tenant's), oldest first."""
        kv = await self._kv()
        records: list[ApiKeyRecord] = []
        try:
            entries = await kv_current(kv, RECORD_PREFIX + ">")
        except Exception as exc:
            raise AuthBackendUnavailable(f"key store unavailable: {type(exc).__name__}") from None
        for key, value in entries:
            try:
                records.append(ApiKeyRecord.decode(value))
            except ValueError as exc:
                log.error("api_key_record_corrupt", kv_key=key, error=str(exc))
        if tenant_id is not None:
            records = [record for record in records if record.tenant_id == tenant_id]
        return sorted(records, key=lambda record: (record.created_at, record.key_id))

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Mark ``key_id`` revoked (idempotent; the first revocation time is kept).

        Raises :class:`ApiKeyNotFound` when there is no such key.
        """
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise ApiKeyNotFound(key_id)
        kv = await self._kv()
        for _ in range(5):
            record, revision = await self._fetch(key_id)
            if record is None:
                raise ApiKeyNotFound(key_id)
            if record.revoked:
                return record
            revoked = replace(record, revoked_at=time.time())
            try:
                await kv.update(RECORD_PREFIX + key_id, revoked.encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue  # changed meanwhile: read again
            except Exception as exc:
                raise AuthBackendUnavailable(
                    f"key store unavailable: {type(exc).__name__}"
                ) from None
            self.cache.discard(key_id)
            log.info("api_key_revoked", key_id=key_id, tenant_id=record.tenant_id)
            return revoked
        raise AuthBackendUnavailable(f"API key {key_id!r} kept changing; try again")

    async def bind_pepper(self) -> list[ApiKeyRecord]:
        """Add ``bound_hash`` (for this store's pepper) to every unpeppered record lacking one,
        so those keys keep working on gateways that have the pepper. Idempotent; returns the
        records it changed. Needs a pepper."""
        if not self._pepper:
            raise ConfigError("PYOCO_AUTH_PEPPER", "<unset>", "the pepper to bind keys to")
        kv = await self._kv()
        changed = []
        for listed in await self.list():
            if listed.hash_alg != PLAIN_HASH_ALGORITHM or listed.bound_hash:
                continue
            for _ in range(5):
                record, revision = await self._fetch(listed.key_id)
                if record is None or record.bound_hash:
                    break
                bound = replace(record, bound_hash=bound_hash(self._pepper, record.secret_hash))
                try:
                    await kv.update(RECORD_PREFIX + record.key_id, bound.encode(), last=revision)
                except KeyWrongLastSequenceError:
                    continue  # revoked meanwhile: read again
                except Exception as exc:
                    raise AuthBackendUnavailable(
                        f"key store unavailable: {type(exc).__name__}"
                    ) from None
                self.cache.discard(record.key_id)
                log.info("api_key_bound_to_pepper", key_id=record.key_id)
                changed.append(bound)
                break
        return changed

    async def verify(self, presented: str) -> ApiKeyIdentity:
        """Check a presented key; return its identity.

        Raises :class:`ApiKeyRejected` (malformed, unknown, mismatch, revoked) or
        :class:`AuthBackendUnavailable` when the record is not cached and KV cannot be read.
        """
        key_id, _ = parse_api_key(presented)
        cached = self.cache.get(key_id)
        if cached is not None:
            record = cached.record
        else:
            record, _ = await self._fetch(key_id)
            self.cache.put(key_id, record)
        if record is None:
            raise ApiKeyRejected("unknown", key_id)
        failure = _matches(record, self._pepper, presented)
        if failure is not None:
            raise ApiKeyRejected(failure, key_id)
        if record.revoked:
            raise ApiKeyRejected("revoked", key_id)
        return ApiKeyIdentity(key_id=record.key_id, tenant_id=record.tenant_id, role=record.role)


async def open_auth_kv(js: Any, settings: Settings) -> Any:
    """The auth bucket's KV handle; creates the bucket (as ``ensure_resources`` does) if missing."""
    try:
        return await js.key_value(settings.auth_kv_bucket)
    except BucketNotFoundError:
        (config,) = [c for c in kv_configs(settings) if c.bucket == settings.auth_kv_bucket]
        return await js.create_key_value(config)
