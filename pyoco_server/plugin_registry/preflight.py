"""Preflight of a plugin wheel: run by ``pyoco-client`` before uploading and by the gateway
before storing, so both judge a file the same way.

A wheel passes when its filename is a valid wheel filename, the archive is a readable zip whose
members stay inside the install directory (no absolute paths, no ``..``, no links), its size and
unpacked size are under the caps, its ``*.dist-info`` names the same distribution and version
as the filename, and it declares at least one entry point in group ``pyoco_server`` (unless the
caller explicitly allows a wheel without one, e.g. a library other plugins depend on).
"""

from __future__ import annotations

import configparser
import hashlib
import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from typing import Any

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from ..errors import PyocoServerError

ENTRY_POINT_GROUP = "pyoco_server"
WHEEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._+-]+\.whl\Z")
#: The unpacked archive may be at most this many times the wheel's own size cap (zip bombs).
UNPACKED_FACTOR = 8
MAX_MEMBERS = 20_000


class WheelRejected(PyocoServerError):
    """A wheel failed preflight (ERR-PYOCO-0042); ``problems`` lists every reason."""

    number = 42

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("wheel rejected by preflight: " + "; ".join(problems))


@dataclass(frozen=True)
class WheelFacts:
    """What preflight learnt about a wheel."""

    filename: str
    distribution: str
    version: str
    sha256: str
    size: int
    entry_points: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "distribution": self.distribution,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "entry_points": list(self.entry_points),
            "requires": list(self.requires),
        }


def wheel_identity(filename: str) -> tuple[str, Version]:
    """``(canonical distribution name, version)`` of a wheel filename; ``ValueError`` if it is
    not one."""
    if not WHEEL_NAME_PATTERN.match(filename):
        raise ValueError(f"{filename!r} is not a wheel filename (NAME-VERSION-TAGS.whl)")
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise ValueError(f"{filename!r} is not a valid wheel filename: {exc}") from None
    return str(name), version


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be unpacked (``None`` when it may)."""
    name = info.filename
    if "\\" in name or "\x00" in name:
        return f"member {name!r} has a backslash or NUL in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return f"member {name!r} has an absolute path"
    if any(part == ".." for part in name.split("/")):
        return f"member {name!r} climbs out of the install directory"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"member {name!r} is a symbolic link"
    return None


def _dist_info_dir(names: list[str]) -> str | None:
    dirs = {name.split("/", 1)[0] for name in names if "/" in name}
    found = sorted(d for d in dirs if d.endswith(".dist-info"))
    return found[0] if len(found) == 1 else None


def _entry_points(text: str) -> tuple[str, ...]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    if not parser.has_section(ENTRY_POINT_GROUP):
        return ()
    return tuple(parser.options(ENTRY_POINT_GROUP))


def inspect_wheel(
    filename: str,
    data: bytes,
    max_bytes: int,
    require_entry_point: bool = True,
) -> WheelFacts:
    """Check ``data`` (the bytes of ``filename``); return its facts or raise
    :class:`WheelRejected` listing every problem found."""
    problems: list[str] = []
    try:
        distribution, version = wheel_identity(filename)
    except ValueError as exc:
        raise WheelRejected([str(exc)]) from None
    if len(data) > max_bytes:
        raise WheelRejected([f"the wheel is {len(data)} bytes, over the cap of {max_bytes}"])
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise WheelRejected(["the file is not a zip archive"]) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise WheelRejected([f"the archive has {len(infos)} members (at most {MAX_MEMBERS})"])
        problems += [reason for info in infos if (reason := unsafe_member(info))]
        unpacked = sum(info.file_size for info in infos)
        if unpacked > max_bytes * UNPACKED_FACTOR:
            problems.append(
                f"the archive unpacks to {unpacked} bytes, over {max_bytes * UNPACKED_FACTOR}"
            )
        names = [info.filename for info in infos]
        dist_info = _dist_info_dir(names)
        entry_points: tuple[str, ...] = ()
        requires: tuple[str, ...] = ()
        if dist_info is None:
            problems.append("the archive needs exactly one *.dist-info directory")
        elif not problems:
            metadata_name = f"{dist_info}/METADATA"
            if metadata_name not in names or f"{dist_info}/WHEEL" not in names:
                problems.append(f"{dist_info} lacks METADATA or WHEEL")
            else:
                metadata = HeaderParser().parsestr(
                    archive.read(metadata_name).decode("utf-8", "replace")
                )
                if canonicalize_name(metadata.get("Name") or "") != distribution:
                    problems.append(
                        f"METADATA names {metadata.get('Name')!r}, the filename {distribution!r}"
                    )
                try:
                    same_version = Version(metadata.get("Version") or "") == version
                except ValueError:
                    same_version = False
                if not same_version:
                    problems.append(
                        f"METADATA version {metadata.get('Version')!r} differs from the "
                        f"filename's {version}"
                    )
                requires = tuple(metadata.get_all("Requires-Dist") or ())
            if f"{dist_info}/entry_points.txt" in names:
                try:
                    entry_points = _entry_points(
                        archive.read(f"{dist_info}/entry_points.txt").decode("utf-8", "replace")
                    )
                except configparser.Error as exc:
                    problems.append(f"entry_points.txt is malformed: {exc.message}")
    warnings: list[str] = []
    if not entry_points:
        message = f"no entry point in group {ENTRY_POINT_GROUP!r}: workers would load nothing"
        if require_entry_point:
            problems.append(message + " (allow it explicitly for a library wheel)")
        else:
            warnings.append(message)
    if problems:
        raise WheelRejected(problems)
    return WheelFacts(
        filename=filename,
        distribution=distribution,
        version=str(version),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        entry_points=entry_points,
        requires=requires,
        warnings=tuple(warnings),
    )
