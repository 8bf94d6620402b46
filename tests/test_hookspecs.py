"""Every hook is documented (docstring + docs/plugins.md) and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from pyoco_server import hookspecs

HOOKS = sorted(
    name
    for name, obj in vars(hookspecs).items()
    if name.startswith("pyoco_") and inspect.isfunction(obj)
)


def test_contract_hooks_exist():
    assert {
        "pyoco_resolve_flow",
        "pyoco_check_workflow_yaml",
        "pyoco_enrich_snapshot",
        "pyoco_failure_disposition",
    } <= set(HOOKS)


def test_every_hook_has_reference_docstring():
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":return:" in doc, name
        for parameter in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f":param {parameter}:" in doc, (name, parameter)
        spec = getattr(hookspecs, name).pyoco_server_spec
        assert ("firstresult" in doc) == bool(spec.get("firstresult")), name


def test_every_hook_is_in_the_plugin_guide_with_its_signature(repo_root: Path):
    guide = (repo_root / "docs" / "plugins.md").read_text()
    for name in HOOKS:
        parameters = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"{name}({parameters})" in guide, f"{name}({parameters}) missing in docs/plugins.md"


def test_every_hook_has_a_test(repo_root: Path):
    tests = "\n".join(
        path.read_text()
        for path in (repo_root / "tests").rglob("test_*.py")
        if path.name != "test_hookspecs.py"
    )
    for name in HOOKS:
        assert re.search(rf"\b{name}\b", tests), f"no test mentions {name}"
