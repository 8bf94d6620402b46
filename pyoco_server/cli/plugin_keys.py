"""``pyoco-server-admin plugin-key create``: an ed25519 key pair for signing plugin wheels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..plugin_registry.signing import (
    SigningKeyError,
    generate_key_pair,
    key_id_of,
    parse_public_key,
    write_private_key,
)
from .common import EXIT_OK


def add_plugin_key_parser(commands: Any) -> None:
    """Register ``plugin-key create`` on the admin command's sub-parsers."""
    plugin_key = commands.add_parser("plugin-key", help="create plugin signing keys")
    actions = plugin_key.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create an ed25519 key pair for signing plugin wheels",
        description="Write a new ed25519 private key to --out (PEM, mode 0600, never "
        "overwritten) and print its public key and key id. Publishers sign with the private "
        "key (pyoco-client plugins publish --sign-key FILE); workers trust the public key "
        "through PYOCO_PLUGIN_TRUSTED_KEYS or --trusted-keys. Needs no NATS.",
    )
    create.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="where to write the private key"
    )
    create.add_argument(
        "--public-out",
        type=Path,
        metavar="FILE",
        help="also write the public key (one line) to FILE, e.g. for PYOCO_PLUGIN_TRUSTED_KEYS",
    )


def run_plugin_key(args: argparse.Namespace) -> int:
    """Create the key pair; print ``{key_id, public_key, private_key_file}`` as JSON."""
    pem, public = generate_key_pair()
    try:
        write_private_key(args.out, pem)
    except FileExistsError:
        raise SigningKeyError(f"{args.out} exists; choose another --out") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot write {args.out}: {exc.strerror}") from None
    if args.public_out is not None:
        args.public_out.write_text(public + "\n")
    print(
        json.dumps(
            {
                "key_id": key_id_of(parse_public_key(public)),
                "public_key": public,
                "private_key_file": str(args.out),
            },
            indent=2,
        )
    )
    return EXIT_OK
