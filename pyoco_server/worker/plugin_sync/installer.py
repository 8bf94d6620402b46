"""Verify a plugin wheel and unpack it into a versioned directory of its own.

Order matters: nothing is written before the wheel's sha256 matches the registry's record and
its signature verifies with a key this worker trusts; the archive is then checked again by the
shared preflight (paths, sizes, metadata), against this interpreter's platform tags, and for
dependencies it needs. Only then is it unpacked — into a temporary directory that is renamed
into place in one step, so a directory either holds a complete, verified wheel or does not
exist. Wheels are unpacked, never installed with pip into the interpreter's site-packages.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import shutil
import uuid
import zipfile
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from ...errors import PyocoServerError
from ...plugin_registry.preflight import WheelRejected, inspect_wheel
from ...plugin_registry.records import Release
from ...plugin_registry.signing import SignatureRefused, TrustedKeys

MARKER = ".pyoco-verified"
#: The key id that signed the directory's wheel (a restart loads it only while still trusted).
KEY_MARKER = ".pyoco-key-id"
#: Old versions kept per distribution for quick roll-backs (beyond the active one).
KEEP_VERSIONS = 3


class InstallFailed(PyocoServerError):
    """A verified wheel cannot be installed here (ERR-PYOCO-0045); ``reason`` is
    ``missing_dependency``, ``incompatible`` or ``invalid_wheel``."""

    number = 45

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


def verify(release: Release, data: bytes, trusted: TrustedKeys) -> str:
    """Check the bytes against the release's sha256 and its signature against ``trusted``;
    return the signing key id. Raises :class:`SignatureRefused`."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != release.sha256:
        raise SignatureRefused(
            "checksum_mismatch",
            f"{release.filename} has sha256 {digest[:12]}… but the registry recorded "
            f"{release.sha256[:12]}…: the stored wheel was modified",
        )
    return trusted.verify(release.signature, release.filename, digest)


def _installed_version(name: str, extra_paths: list[str]) -> str | None:
    for dist in importlib.metadata.distributions(path=extra_paths):
        if canonicalize_name(dist.metadata["Name"] or "") == canonicalize_name(name):
            return dist.version
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_dependencies(release: Release, extra_paths: list[str]) -> None:
    """Raise :class:`InstallFailed` when a requirement is neither installed in this
    interpreter nor provided by another synced plugin (``extra_paths``)."""
    missing = []
    for text in release.requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            raise InstallFailed("invalid_wheel", f"unreadable requirement {text!r}") from None
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        have = _installed_version(requirement.name, extra_paths)
        if have is None:
            missing.append(f"{requirement} (not installed)")
        elif requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            missing.append(f"{requirement} (installed: {have})")
    if missing:
        raise InstallFailed(
            "missing_dependency",
            f"{release.filename} needs {', '.join(missing)}; install it in the worker's "
            "environment or publish it as a plugin wheel",
        )


def check_platform(filename: str) -> None:
    _name, _version, _build, tags = parse_wheel_filename(filename)
    if not set(tags) & set(sys_tags()):
        raise InstallFailed("incompatible", f"{filename} does not fit this Python/platform")


def _unpack(data: bytes, target: Path, data_dir: str) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.filename
            if name.startswith(data_dir + "/"):
                scheme, _, rest = name[len(data_dir) + 1 :].partition("/")
                if scheme not in ("purelib", "platlib") or not rest:
                    continue  # scripts, headers and data files are not needed to load plugins
                name = rest
            if name.endswith("/"):
                continue
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)


def install(
    release: Release,
    data: bytes,
    root: Path,
    trusted: TrustedKeys,
    max_bytes: int,
    extra_paths: list[str],
) -> tuple[Path, str]:
    """Verify and unpack ``release``; return ``(directory, signing key id)``.

    Raises :class:`SignatureRefused` or :class:`InstallFailed`; in both cases nothing of the
    wheel is left on disk.
    """
    key_id = verify(release, data, trusted)
    try:
        facts = inspect_wheel(release.filename, data, max_bytes, require_entry_point=False)
    except WheelRejected as exc:
        raise InstallFailed("invalid_wheel", str(exc)) from None
    check_platform(release.filename)
    check_dependencies(release, extra_paths)
    home = root / facts.distribution
    target = home / f"{release.version}-{release.sha256[:12]}"
    marker = target / MARKER
    if marker.is_file() and marker.read_text() == release.sha256:
        (target / KEY_MARKER).write_text(key_id)
        return target, key_id
    home.mkdir(parents=True, exist_ok=True)
    staging = home / f".staging-{uuid.uuid4().hex}"
    try:
        staging.mkdir()
        data_dir = f"{facts.distribution.replace('-', '_')}-{facts.version}.data"
        names = {info.split("/", 1)[0] for info in zipfile.ZipFile(io.BytesIO(data)).namelist()}
        data_dir = next((n for n in names if n.endswith(".data")), data_dir)
        _unpack(data, staging, data_dir)
        (staging / MARKER).write_text(release.sha256)
        (staging / KEY_MARKER).write_text(key_id)
        if target.exists():
            shutil.rmtree(target)  # an incomplete leftover: its marker did not match
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(home, keep={target.name})
    return target, key_id


def remove_leftovers(root: Path) -> int:
    """Delete staging directories a killed worker left behind (never loaded: only complete,
    renamed directories are). Returns how many were removed."""
    leftovers = list(root.glob("*/.staging-*")) if root.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return len(leftovers)


def _prune(home: Path, keep: set[str]) -> None:
    """Drop all but the newest :data:`KEEP_VERSIONS` old directories of one distribution."""
    old = sorted(
        (p for p in home.iterdir() if p.is_dir() and p.name not in keep and p.name[0] != "."),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in old[KEEP_VERSIONS:]:
        shutil.rmtree(path, ignore_errors=True)
