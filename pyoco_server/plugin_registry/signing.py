"""Ed25519 signatures on plugin wheels, and the keys workers trust.

Why ed25519 through ``cryptography``: one fixed, modern curve with no parameters to get
wrong, 32-byte public keys that fit on one line of an environment variable, deterministic
signatures (no per-signature randomness to botch), and ``cryptography`` is the most widely
deployed, actively maintained binding of OpenSSL for Python (wheels for every platform).

What is signed is a short text binding the wheel's filename to its sha256::

    pyoco-plugin-wheel-v1\\n<filename>\\n<sha256 hex>

so a signature cannot be moved to another file or survive a change of one byte. A public key
is written ``ed25519:<base64 of the 32 raw bytes>``; its *key id* is the first 16 hex digits of
the sha256 of those bytes. A worker trusts a signature only when the key id names one of its
configured trusted keys and that key verifies it — the public key a publisher attaches to an
upload is informative, never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import ConfigError, PyocoServerError

ALGORITHM = "ed25519"
PUBLIC_PREFIX = "ed25519:"
CONTEXT = "pyoco-plugin-wheel-v1"


class SignatureRefused(PyocoServerError):
    """A wheel's signature is missing, made by an untrusted key or does not verify
    (ERR-PYOCO-0044). ``reason`` is ``unsigned``, ``untrusted_key`` or ``bad_signature``."""

    number = 44

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class SigningKeyError(PyocoServerError):
    """A signing key file cannot be read or is not an ed25519 private key."""

    number = 2


def signed_message(filename: str, sha256: str) -> bytes:
    """The exact bytes a publisher signs for ``filename`` with digest ``sha256``."""
    return f"{CONTEXT}\n{filename}\n{sha256}".encode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>`` for ``key``."""
    return PUBLIC_PREFIX + base64.b64encode(_raw_public(key)).decode("ascii")


def key_id_of(key: Ed25519PublicKey) -> str:
    """The 16-hex-digit id of a public key."""
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Read ``ed25519:<base64>``; ``ValueError`` when it is not an ed25519 public key."""
    text = text.strip()
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"a public key starts with {PUBLIC_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not base64") from None
    if len(raw) != 32:
        raise ValueError("an ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_key_pair() -> tuple[bytes, str]:
    """A new key pair: ``(private key as PKCS#8 PEM, public key text)``."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_text(private.public_key())


def write_private_key(path: Path, pem: bytes) -> None:
    """Create ``path`` readable by its owner only; never overwrite an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The ed25519 private key in the PEM file ``path``."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def sign_wheel(key: Ed25519PrivateKey, filename: str, sha256: str) -> dict[str, str]:
    """The signature document sent with an upload and stored with the release."""
    public = key.public_key()
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id_of(public),
        "public_key": public_key_text(public),
        "signature": base64.b64encode(key.sign(signed_message(filename, sha256))).decode(),
    }


def check_signature_document(document: Any, filename: str, sha256: str) -> dict[str, str]:
    """Check that an uploaded signature is well formed and verifies with the public key it
    names (so a garbled upload is refused at once). This proves nothing about trust: workers
    decide that against their own keys. Raises ``ValueError`` with the reason."""
    if not isinstance(document, dict):
        raise ValueError("the signature must be a JSON object")
    if document.get("algorithm") != ALGORITHM:
        raise ValueError(f"the signature algorithm must be {ALGORITHM!r}")
    public = parse_public_key(str(document.get("public_key") or ""))
    if document.get("key_id") != key_id_of(public):
        raise ValueError("key_id does not match public_key")
    _verify(public, str(document.get("signature") or ""), filename, sha256)
    return {key: str(document[key]) for key in ("algorithm", "key_id", "public_key", "signature")}


def _verify(key: Ed25519PublicKey, signature: str, filename: str, sha256: str) -> None:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, signed_message(filename, sha256))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ValueError("the signature does not verify") from None


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a worker accepts signatures from, by key id."""

    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def load(cls, entries: tuple[str, ...] | list[str], source: str) -> TrustedKeys:
        """Each entry is a key (``ed25519:...``) or a file holding keys, one per line (``#``
        comments allowed). Raises :class:`ConfigError` naming ``source`` on a bad entry."""
        keys: dict[str, Ed25519PublicKey] = {}
        for entry in entries:
            lines = [entry]
            if not entry.startswith(PUBLIC_PREFIX):
                try:
                    lines = Path(entry).expanduser().read_text().splitlines()
                except OSError as exc:
                    raise ConfigError(
                        source, entry, f"an ed25519:... key or a readable file ({exc.strerror})"
                    ) from None
            for line in lines:
                text = line.split("#", 1)[0].strip()
                if not text:
                    continue
                try:
                    key = parse_public_key(text)
                except ValueError as exc:
                    raise ConfigError(source, text, f"an ed25519:<base64> key ({exc})") from None
                keys[key_id_of(key)] = key
        return cls(keys)

    def verify(self, document: Any, filename: str, sha256: str) -> str:
        """The key id that signed ``filename``/``sha256``; raises :class:`SignatureRefused`."""
        if not isinstance(document, dict) or not document.get("signature"):
            raise SignatureRefused("unsigned", f"{filename} carries no signature")
        key = self.keys.get(str(document.get("key_id")))
        if key is None:
            raise SignatureRefused(
                "untrusted_key",
                f"{filename} is signed by key {document.get('key_id')!r}, which is not in "
                "PYOCO_PLUGIN_TRUSTED_KEYS",
            )
        try:
            _verify(key, str(document.get("signature")), filename, sha256)
        except ValueError:
            raise SignatureRefused(
                "bad_signature",
                f"the signature of {filename} does not match its content (sha256 {sha256[:12]}…)",
            ) from None
        return str(document["key_id"])
