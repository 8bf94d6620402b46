"""``pyoco-server-admin``: API key administration (create, list, revoke) and tenant deletion
against NATS KV."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client

from .. import __version__
from ..api_keys import (
    ROLE_SUBMITTER,
    ROLES,
    ApiKeyStore,
    AuthBackendUnavailable,
    InvalidKeyRequest,
    open_auth_kv,
    pepper_of,
    validate_tenant,
)
from ..config import Settings
from ..log import configure_logging
from ..nats_client import nats_servers
from .common import EXIT_OK, add_nats_argument, load_settings, run_command
from .plugin_keys import add_plugin_key_parser, run_plugin_key
from .tenants import add_tenant_parser, delete_tenant

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
#: How long the whole connection attempt may take before the command gives up.
CONNECT_DEADLINE_SEC = 5.0


def _tenant(value: str) -> str:
    try:
        return validate_tenant(value)
    except InvalidKeyRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyoco-server-admin",
        description="Administer pyoco-server API keys, stored (hashed) in the NATS KV bucket "
        "PYOCO_AUTH_KV_BUCKET, and delete tenants. Output is JSON on stdout.",
    )
    parser.add_argument("--version", action="version", version=f"pyoco-server-admin {__version__}")
    add_nats_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api_key = commands.add_parser("api-key", help="create, list or revoke API keys")
    actions = api_key.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="create a key for a tenant and print it once",
        description="Create an API key for TENANT. The plain key is printed once, in the "
        "'api_key' field; only a hash is stored, so it cannot be shown again. With "
        "PYOCO_AUTH_PEPPER set (the same value the gateways use) the hash is keyed with it; "
        "without one, a plain SHA-256 (see bind-pepper).",
    )
    create.add_argument(
        "--tenant", required=True, type=_tenant, help="tenant id, ^[A-Za-z0-9_-]{1,64}$"
    )
    create.add_argument("--label", help="free text to recognise the key by (optional)")
    create.add_argument(
        "--role",
        choices=ROLES,
        default=ROLE_SUBMITTER,
        help="submitter: runs only; operator: may also publish, delete and pin plugin wheels "
        f"[{ROLE_SUBMITTER}]",
    )

    listing = actions.add_parser(
        "list",
        help="list keys (never their secrets)",
        description="List every key record, oldest first: key_id, tenant_id, label, "
        "created_at and revoked_at (Unix seconds). An empty system prints [].",
    )
    listing.add_argument("--tenant", type=_tenant, help="only this tenant's keys")

    revoke = actions.add_parser(
        "revoke",
        help="revoke a key",
        description="Revoke a key. Gateways refuse it within PYOCO_AUTH_CACHE_TTL_SEC "
        "seconds. Revoking a revoked key changes nothing; an unknown key id exits 1.",
    )
    revoke.add_argument("--key-id", required=True, help="the key id (shown by create and list)")

    actions.add_parser(
        "bind-pepper",
        help="let keys created without a pepper keep working once gateways have one",
        description="Bind every key created without a pepper to PYOCO_AUTH_PEPPER (needs it "
        "set): adds HMAC(pepper, stored hash) to its record, so gateways started with that "
        "pepper accept it. Run it before giving the gateways the pepper; idempotent. Prints "
        "the records it changed.",
    )
    add_plugin_key_parser(commands)
    add_tenant_parser(commands, _tenant)
    return parser


def _display_url(url: str) -> str:
    """``host:port`` of each NATS URL in ``url``, without any credentials they carry."""
    shown = []
    for server in nats_servers(url):
        parts = urlsplit(server)
        shown.append(f"{parts.hostname}:{parts.port or 4222}" if parts.hostname else "?")
    return ",".join(shown) or "the NATS server"


async def _connect(url: str) -> Client:
    """Connect once, giving up within :data:`CONNECT_DEADLINE_SEC` (no reconnect loop)."""
    failures: list[Exception] = []

    async def remember(exc: Exception) -> None:
        failures.append(exc)

    try:
        return await asyncio.wait_for(
            nats.connect(
                servers=nats_servers(url),
                name="pyoco-server-admin",
                connect_timeout=2.0,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=remember,
            ),
            CONNECT_DEADLINE_SEC,
        )
    except Exception as exc:
        cause = failures[-1] if failures else exc
        reason = str(cause) or type(cause).__name__
        if isinstance(cause, asyncio.TimeoutError):
            reason = "timed out"
        raise AuthBackendUnavailable(
            f"cannot connect to NATS at {_display_url(url)}: {reason}; start it or pass "
            "--nats-url / set PYOCO_NATS_URL"
        ) from None


async def _with_store(
    settings: Settings, pepper: bytes, action: Callable[[ApiKeyStore, Client], Awaitable[Any]]
) -> Any:
    url = settings.nats_url or DEFAULT_NATS_URL
    nc = await _connect(url)
    try:
        js = nc.jetstream(timeout=5.0)
        try:
            kv = await open_auth_kv(js, settings)
        except Exception as exc:
            raise AuthBackendUnavailable(
                f"cannot open KV bucket {settings.auth_kv_bucket!r} at {_display_url(url)} "
                f"({type(exc).__name__}); is JetStream enabled?"
            ) from None

        async def get_kv() -> Any:
            return kv

        return await action(ApiKeyStore(get_kv, pepper), nc)
    finally:
        await nc.close()


def _print(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _run(args: argparse.Namespace) -> int:
    if args.command == "plugin-key":
        return run_plugin_key(args)
    settings = load_settings({"nats_url": args.nats_url}, {"nats_url": "--nats-url"})
    configure_logging(settings, "pyoco-server:admin")
    if args.command == "tenant":
        done = asyncio.run(
            _with_store(settings, b"", lambda store, nc: delete_tenant(settings, nc, store, args))
        )
        _print(done)
    elif args.action == "create":
        pepper = pepper_of(settings)
        if not pepper:
            print(
                "note: PYOCO_AUTH_PEPPER is not set: the key is stored as a plain SHA-256 "
                "(see `api-key bind-pepper` in docs/auth.md before setting a pepper later)",
                file=sys.stderr,
            )
        api_key, record = asyncio.run(
            _with_store(
                settings, pepper, lambda store, _: store.create(args.tenant, args.label, args.role)
            )
        )
        _print({**record.public(), "api_key": api_key})
        print(
            "Store this api_key now: it is shown only once and cannot be recovered.",
            file=sys.stderr,
        )
    elif args.action == "list":
        records = asyncio.run(_with_store(settings, b"", lambda store, _: store.list(args.tenant)))
        _print([{**record.public(), "pepper": record.pepper_scheme} for record in records])
    elif args.action == "bind-pepper":
        pepper = pepper_of(settings, required=True)
        changed = asyncio.run(_with_store(settings, pepper, lambda store, _: store.bind_pepper()))
        _print([record.public() for record in changed])
    else:
        record = asyncio.run(_with_store(settings, b"", lambda store, _: store.revoke(args.key_id)))
        _print(record.public())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
