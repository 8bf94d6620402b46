"""``pyoco-client plugins publish|pin|unpin|list|history|delete`` and the 0.5.1 spellings
``wheel-upload``, ``wheels``, ``wheel-history`` and ``wheel-delete``.

Publishing runs the same preflight as the gateway before anything is sent, and signs the wheel
with ``--sign-key`` (an ed25519 key from ``pyoco-server-admin plugin-key create``): workers
install only wheels signed by a key their operator trusts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from ..client import PyocoClientError, PyocoHttpClient
from ..config import Settings
from ..plugin_registry.preflight import WheelRejected, inspect_wheel
from ..plugin_registry.records import ACTIONS
from ..plugin_registry.signing import SigningKeyError, load_private_key, sign_wheel
from .common import EXIT_OK
from .output import UsageError, print_json, print_table

SIGN_KEY_ENV = "PYOCO_PLUGIN_SIGNING_KEY"
LIST_COLUMNS = ["distribution", "version", "tags", "signed", "key_id", "latest", "pinned", "name"]
HISTORY_COLUMNS = ["occurred_at", "action", "distribution", "version", "wheel_name", "sha256_hex"]


def _preflight(path: Path, data: bytes, mode: str, allow_no_entry_points: bool) -> None:
    if mode == "off":
        return
    try:
        facts = inspect_wheel(
            path.name,
            data,
            Settings().wheel_max_bytes,
            require_entry_point=not allow_no_entry_points,
        )
    except WheelRejected as exc:
        if mode == "warn":
            for problem in exc.problems:
                print(f"pyoco-client: preflight warning: {problem}", file=sys.stderr)
            return
        raise PyocoClientError(
            f"ERR-PYOCO-0042: {exc} — fix the wheel, or use --preflight warn/off "
            "(the gateway checks again)"
        ) from None
    for warning in facts.warnings:
        print(f"pyoco-client: preflight warning: {warning}", file=sys.stderr)


def _publish(
    client: PyocoHttpClient,
    wheel: str,
    tags: str | None,
    sign_key: str | None,
    preflight: str,
    allow_no_entry_points: bool,
    replace: bool = True,
) -> int:
    path = Path(wheel)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {wheel}: {exc.strerror}") from None
    _preflight(path, data, preflight, allow_no_entry_points)
    signature = None
    if sign_key:
        try:
            key = load_private_key(Path(sign_key).expanduser())
        except SigningKeyError as exc:
            raise UsageError(str(exc)) from None
        signature = sign_wheel(key, path.name, hashlib.sha256(data).hexdigest())
    else:
        print(
            "pyoco-client: warning: publishing an unsigned wheel; workers refuse it "
            f"(sign with --sign-key FILE or {SIGN_KEY_ENV})",
            file=sys.stderr,
        )
    tag_list = [tag.strip() for tag in (tags or "").split(",") if tag.strip()]
    print_json(
        client.upload_wheel(
            path.name,
            data,
            tags=tag_list,
            replace=replace,
            signature=signature,
            allow_no_entry_points=allow_no_entry_points,
        )
    )
    return EXIT_OK


def cmd_publish(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    return _publish(
        client, args.wheel, args.tags, args.sign_key, args.preflight, args.allow_no_entry_points
    )


def cmd_wheel_upload(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    return _publish(
        client,
        args.wheel_file,
        args.tags,
        args.sign_key,
        args.preflight,
        args.allow_no_entry_points,
        args.replace,
    )


def cmd_pin(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    name, sep, version = args.spec.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise UsageError(f"expected NAME==VERSION, got {args.spec!r}")
    print_json(client.pin_wheel(name.strip(), version.strip()))
    return EXIT_OK


def cmd_unpin(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.pin_wheel(args.name, None))
    return EXIT_OK


def cmd_list(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    wheels = client.list_wheels()
    if getattr(args, "output", "json") == "table":
        print_table(wheels, LIST_COLUMNS)
    else:
        print_json(wheels)
    return EXIT_OK


def cmd_history(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    events = client.list_wheel_history(args.limit, args.wheel_name, args.action)
    if getattr(args, "output", "json") == "table":
        print_table(events, HISTORY_COLUMNS)
    else:
        print_json(events)
    return EXIT_OK


def cmd_delete(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.delete_wheel(args.name))
    return EXIT_OK


def _add_publish_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tags", metavar="TAG[,TAG...]", help="only workers with one of these tags install it"
    )
    parser.add_argument(
        "--sign-key",
        metavar="FILE",
        default=os.environ.get(SIGN_KEY_ENV),
        help=f"ed25519 private key to sign with [{SIGN_KEY_ENV}]; unsigned wheels are stored "
        "but no worker installs them",
    )
    parser.add_argument(
        "--preflight",
        choices=("strict", "warn", "off"),
        default="strict",
        help="check the wheel here before uploading: strict stops on a problem, warn prints "
        "it, off skips (the gateway always checks) [strict]",
    )
    parser.add_argument(
        "--allow-no-entry-points",
        action="store_true",
        help="accept a wheel without a pyoco_server entry point (a library other plugins use)",
    )


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=100, help="at most N events (1..500) [100]")
    parser.add_argument("--wheel-name", help="only events of this wheel filename")
    parser.add_argument("--action", choices=ACTIONS, help="only this action")


def add_plugin_registry_commands(commands: Any) -> None:
    """Register ``plugins …`` and the 0.5.1 ``wheel*`` commands on ``pyoco-client``."""
    plugins = commands.add_parser(
        "plugins",
        help="the plugin registry: publish, pin, list, history, delete",
        description="Ship plugin wheels to workers running with --plugin-sync. Changing the "
        "registry needs an operator key.",
    )
    actions = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    publish = actions.add_parser("publish", help="check, sign and upload a wheel")
    publish.add_argument("wheel", metavar="WHEEL", help="path to the .whl file")
    _add_publish_options(publish)
    publish.set_defaults(handler=cmd_publish)
    pin = actions.add_parser("pin", help="make workers run NAME==VERSION until unpinned")
    pin.add_argument("spec", metavar="NAME==VERSION")
    pin.set_defaults(handler=cmd_pin)
    unpin = actions.add_parser("unpin", help="let workers follow the latest version again")
    unpin.add_argument("name", metavar="NAME")
    unpin.set_defaults(handler=cmd_unpin)
    listing = actions.add_parser("list", help="every stored wheel")
    listing.add_argument("--output", choices=("json", "table"), default="json")
    listing.set_defaults(handler=cmd_list)
    history = actions.add_parser("history", help="publish, delete and pin events, newest first")
    _add_history_options(history)
    history.add_argument("--output", choices=("json", "table"), default="json")
    history.set_defaults(handler=cmd_history)
    delete = actions.add_parser(
        "delete", help="remove a wheel; workers go back to the pinned or previous version"
    )
    delete.add_argument("name", metavar="WHEEL_FILENAME")
    delete.set_defaults(handler=cmd_delete)

    upload = commands.add_parser("wheel-upload", help="(0.5.1) same as `plugins publish`")
    upload.add_argument("--wheel-file", required=True, help="path to the .whl file")
    _add_publish_options(upload)
    upload.add_argument(
        "--replace",
        dest="replace",
        action="store_true",
        default=True,
        help="(0.5.1, default) accepted; a stored version is never replaced",
    )
    upload.add_argument(
        "--no-replace", dest="replace", action="store_false", help="(0.5.1) accepted"
    )
    upload.add_argument(
        "--allow-missing-usage-doc", action="store_true", help="(0.5.1) accepted, no effect"
    )
    upload.set_defaults(handler=cmd_wheel_upload)
    commands.add_parser("wheels", help="(0.5.1) same as `plugins list`").set_defaults(
        handler=cmd_list
    )
    wheel_history = commands.add_parser("wheel-history", help="(0.5.1) `plugins history`")
    _add_history_options(wheel_history)
    wheel_history.set_defaults(handler=cmd_history)
    wheel_delete = commands.add_parser("wheel-delete", help="(0.5.1) same as `plugins delete`")
    wheel_delete.add_argument("--name", required=True, help="the wheel filename")
    wheel_delete.set_defaults(handler=cmd_delete)
