"""Preflight, signatures and the worker's installer on real wheels (no NATS)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pyoco_server.plugin_registry.preflight import WheelRejected, inspect_wheel
from pyoco_server.plugin_registry.records import Distribution, Release
from pyoco_server.plugin_registry.signing import (
    SignatureRefused,
    TrustedKeys,
    load_private_key,
    sign_wheel,
)
from pyoco_server.worker.plugin_sync.installer import InstallFailed, install

MAX = 64 * 1024 * 1024


def _release(path: Path, data: bytes, signature: dict | None, tags=()) -> Release:
    facts = inspect_wheel(path.name, data, MAX)
    return Release(
        filename=path.name,
        distribution=facts.distribution,
        version=facts.version,
        sha256=facts.sha256,
        size=facts.size,
        tags=tuple(tags),
        entry_points=facts.entry_points,
        requires=facts.requires,
        signature=signature,
    )


def _rewrite(data: bytes, change) -> bytes:
    """A copy of the wheel ``data`` with ``change(name, bytes) -> bytes | None`` applied."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = change(info.filename, src.read(info))
            if body is not None:
                dst.writestr(info.filename, body)
    return out.getvalue()


def test_preflight_reads_the_built_example_wheels(plugin_wheels):
    facts = inspect_wheel(
        plugin_wheels.flow_registry.name, plugin_wheels.flow_registry.read_bytes(), MAX
    )
    assert (facts.distribution, facts.version) == ("pyoco-flow-registry", "0.1.0")
    assert facts.entry_points == ("flow-registry",)
    assert any(req.startswith("pyoco-server") for req in facts.requires)
    for path in (plugin_wheels.policy, plugin_wheels.retry_backoff):
        assert inspect_wheel(path.name, path.read_bytes(), MAX).entry_points


def test_preflight_refuses_path_traversal_and_missing_entry_points(plugin_wheels):
    data = plugin_wheels.flow_registry.read_bytes()
    name = plugin_wheels.flow_registry.name
    evil = _rewrite(data, lambda n, b: b)
    buffer = io.BytesIO(evil)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root true\n")
    with pytest.raises(WheelRejected, match="climbs out"):
        inspect_wheel(name, buffer.getvalue(), MAX)

    no_entry = _rewrite(data, lambda n, b: None if n.endswith("entry_points.txt") else b)
    with pytest.raises(WheelRejected, match="no entry point"):
        inspect_wheel(name, no_entry, MAX)
    assert inspect_wheel(name, no_entry, MAX, require_entry_point=False).warnings

    with pytest.raises(WheelRejected, match="not a wheel filename"):
        inspect_wheel("flow.zip", data, MAX)
    with pytest.raises(WheelRejected, match="differs"):
        inspect_wheel(name.replace("0.1.0", "0.3.0"), data, MAX)
    with pytest.raises(WheelRejected, match="over the cap"):
        inspect_wheel(name, data, 1000)
    with pytest.raises(WheelRejected, match="not a zip"):
        inspect_wheel(name, b"PK not really", MAX)


def test_signatures_verify_only_with_a_trusted_key(plugin_wheels, trusted_key, untrusted_key):
    path = plugin_wheels.flow_registry
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    trusted = TrustedKeys.load([trusted_key.public], "test")
    signed = sign_wheel(load_private_key(trusted_key.private_file), path.name, digest)
    assert trusted.verify(signed, path.name, digest) == signed["key_id"]
    with pytest.raises(SignatureRefused) as refused:
        trusted.verify(None, path.name, digest)
    assert refused.value.reason == "unsigned"
    other = sign_wheel(load_private_key(untrusted_key.private_file), path.name, digest)
    with pytest.raises(SignatureRefused) as refused:
        trusted.verify(other, path.name, digest)
    assert refused.value.reason == "untrusted_key"
    with pytest.raises(SignatureRefused) as refused:
        trusted.verify(signed, path.name, "0" * 64)
    assert refused.value.reason == "bad_signature"
    # A publisher cannot smuggle in its own key by naming a trusted key id.
    forged = {**other, "key_id": signed["key_id"]}
    with pytest.raises(SignatureRefused, match="bad_signature"):
        trusted.verify(forged, path.name, digest)


def test_installer_unpacks_a_verified_wheel_into_its_own_versioned_directory(
    plugin_wheels, trusted_key, tmp_path
):
    path = plugin_wheels.flow_registry
    data = path.read_bytes()
    key = load_private_key(trusted_key.private_file)
    release = _release(path, data, sign_wheel(key, path.name, hashlib.sha256(data).hexdigest()))
    trusted = TrustedKeys.load([trusted_key.public], "test")
    target, key_id = install(release, data, tmp_path, trusted, MAX, [])
    assert target.parent == tmp_path / "pyoco-flow-registry"
    assert target.name.startswith("0.1.0-")
    assert (target / "pyoco_flow_registry" / "plugin.py").is_file()
    assert (target / "pyoco_flow_registry-0.1.0.dist-info" / "entry_points.txt").is_file()
    assert key_id == release.signature["key_id"]


@pytest.mark.parametrize("case", ["tampered", "unsigned", "untrusted", "missing_dependency"])
def test_installer_refuses_and_leaves_nothing_behind(
    case, plugin_wheels, trusted_key, untrusted_key, tmp_path
):
    path = plugin_wheels.flow_registry
    data = path.read_bytes()
    signer = untrusted_key if case == "untrusted" else trusted_key
    if case == "missing_dependency":
        data = _rewrite(
            data,
            lambda n, b: (
                b.replace(
                    b"Requires-Dist: pyoco-server",
                    b"Requires-Dist: no-such-dep-xyz>=1\nRequires-Dist: pyoco-server",
                )
                if n.endswith("METADATA")
                else b
            ),
        )
    digest = hashlib.sha256(data).hexdigest()
    signature = (
        None
        if case == "unsigned"
        else sign_wheel(load_private_key(signer.private_file), path.name, digest)
    )
    release = _release(path, data, signature)
    if case == "tampered":
        data = _rewrite(data, lambda n, b: b + b"\n# injected\n" if n.endswith("plugin.py") else b)
    trusted = TrustedKeys.load([trusted_key.public], "test")
    error = InstallFailed if case == "missing_dependency" else SignatureRefused
    with pytest.raises(error) as refused:
        install(release, data, tmp_path, trusted, MAX, [])
    expected = {
        "tampered": "checksum_mismatch",
        "unsigned": "unsigned",
        "untrusted": "untrusted_key",
        "missing_dependency": "missing_dependency",
    }[case]
    assert refused.value.reason == expected
    if case == "missing_dependency":
        assert "no-such-dep-xyz" in str(refused.value)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_active_release_follows_tags_and_pins():
    def rel(version, tags=()):
        return Release(f"p-{version}-py3-none-any.whl", "p", version, "0" * 64, 1, tuple(tags))

    doc = Distribution("p", [rel("1.0"), rel("1.1"), rel("2.0", ["gpu"])])
    assert doc.active_for(["default"]).version == "1.1"
    assert doc.active_for(["gpu"]).version == "2.0"
    doc.pinned = "1.0"
    assert doc.active_for(["gpu"]).version == "1.0"
    doc.pinned = "2.0"  # pinned to a release this worker's tags do not take
    assert doc.active_for(["default"]).version == "1.1"
    assert Distribution.decode(doc.encode()) == doc


SELECTION_PROBE = """
import json, sys
from pyoco_server.worker.plugin_sync.plugin_set import activate, select_available
from pyoco_server.plugins import build_plugin_manager
activate(sys.argv[1:])
out = {}
for label, allow, disable in [
    ("default", None, []),
    ("allow", ["flow-registry"], []),
    ("disabled", None, ["flow-registry"]),
    ("builtins-only", [], []),
    ("pending", select_available(["flow-registry", "not-synced-yet"]), []),
]:
    pm = build_plugin_manager(plugins=allow, disable=disable)
    info = pm.infos.get("flow-registry")
    out[label] = info and [info.distribution, info.version, info.source]
print(json.dumps(out))
"""


def test_synced_plugins_are_selected_like_pip_installed_ones(plugin_wheels, trusted_key, tmp_path):
    path = plugin_wheels.flow_registry
    data = path.read_bytes()
    key = load_private_key(trusted_key.private_file)
    release = _release(path, data, sign_wheel(key, path.name, hashlib.sha256(data).hexdigest()))
    target, _ = install(
        release, data, tmp_path, TrustedKeys.load([trusted_key.public], "t"), MAX, []
    )
    result = subprocess.run(
        [sys.executable, "-c", SELECTION_PROBE, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {
        "default": ["pyoco-flow-registry", "0.1.0", "entry point"],
        "allow": ["pyoco-flow-registry", "0.1.0", "--plugins"],
        "disabled": None,
        "builtins-only": None,
        "pending": ["pyoco-flow-registry", "0.1.0", "--plugins"],
    }


def test_staging_leftovers_of_a_killed_worker_are_removed(tmp_path):
    from pyoco_server.worker.plugin_sync.installer import remove_leftovers

    kept = tmp_path / "team-flows" / "0.1.0-abcdef012345"
    kept.mkdir(parents=True)
    leftover = tmp_path / "team-flows" / ".staging-0123"
    (leftover / "team_flows").mkdir(parents=True)
    assert remove_leftovers(tmp_path) == 1
    assert not leftover.exists() and kept.is_dir()
    assert remove_leftovers(tmp_path / "missing") == 0


def test_a_restart_loads_only_sets_signed_by_keys_still_trusted(
    plugin_wheels, trusted_key, tmp_path
):
    from pyoco_server.worker.plugin_sync.plugin_set import PluginSet

    path = plugin_wheels.flow_registry
    data = path.read_bytes()
    key = load_private_key(trusted_key.private_file)
    release = _release(path, data, sign_wheel(key, path.name, hashlib.sha256(data).hexdigest()))
    trusted = TrustedKeys.load([trusted_key.public], "t")
    target, key_id = install(release, data, tmp_path, trusted, MAX, [])
    PluginSet({release.distribution: (release.version, str(target))}).save(tmp_path)
    assert PluginSet.load(tmp_path, {key_id}).paths == [str(target)]
    assert PluginSet.load(tmp_path, set()).paths == []  # the key was dropped from the list
