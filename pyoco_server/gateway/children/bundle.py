"""Spawn bundles (``POST /runs/bundle``): several workflows in one YAML, one of them the entry.

Shape (as pyoco-server 0.7.0)::

    version: 1
    workflows:
      main:                      # a single-flow document (flow, tasks, pipes, runtime)
        flow: {graph: "prepare >> fan"}
        tasks:
          prepare: {callable: team.tasks:prepare}
          fan:
            spawn: child           # a child run of workflow 'child'
            inputs: {x: "$node.prepare.output"}   # become the child's params
            on_child_failure: fail   # or continue (optional)
            cancel_with_parent: true # (optional)
      child: {...}
    submit: {entry_workflow: main, inputs: {n: 3}}

Each ``spawn:`` task is rewritten into a call of the built-in spawn task (see
``worker/children/yaml_spawn.py``), so every workflow of the bundle is an ordinary single-flow
document: each one goes through every ``pyoco_check_workflow_yaml`` hook (gateway here, worker
again before running), and runs with the usual YAML machinery. A spawn target that is not in
``workflows`` is a 422.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml

from ...children.spawn_task import (
    CANCEL_INPUT,
    FAILURE_INPUT,
    SPAWN_CALLABLE,
    WORKFLOW_INPUT,
)
from ...errors import PolicyViolation
from ...model import WorkflowContext
from ...workflow import check_workflow_yaml, parse_workflow_yaml, workflow_defaults

BUNDLE_KEYS = frozenset({"version", "workflows", "submit"})
SUBMIT_KEYS = frozenset({"entry_workflow", "inputs"})
SPAWN_TASK_KEYS = frozenset(
    {"spawn", "inputs", "outputs", "on_child_failure", "cancel_with_parent"}
)


@dataclass(frozen=True)
class Bundle:
    """An accepted bundle: every workflow as checked YAML text, the entry and its params."""

    workflows: dict[str, str]
    entry: str
    params: dict[str, Any]
    spawns: bool
    sha256: str


def _fail(reason: str, detail: str, key: str | None = None) -> PolicyViolation:
    return PolicyViolation(reason, detail, key)


def _rewrite_spawn(name: str, where: str, conf: dict[str, Any], workflows: dict) -> dict:
    unknown = set(conf) - SPAWN_TASK_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise _fail("unknown_key", f"unknown key '{where}.{key}' in a spawn task", f"{where}.{key}")
    target = conf.get("spawn")
    if not isinstance(target, str) or target not in workflows:
        raise _fail(
            "unknown_spawn_target",
            f"'{where}.spawn' names workflow {target!r}, which the bundle does not define",
            f"{where}.spawn",
        )
    inputs = conf.get("inputs") or {}
    if not isinstance(inputs, dict) or any(str(k).startswith("_spawn") for k in inputs):
        raise _fail("invalid_type", f"'{where}.inputs' must be a mapping", f"{where}.inputs")
    policy = conf.get("on_child_failure", "fail")
    if policy not in ("fail", "continue"):
        raise _fail(
            "invalid_type",
            f"'{where}.on_child_failure' must be 'fail' or 'continue'",
            f"{where}.on_child_failure",
        )
    cancel = conf.get("cancel_with_parent", True)
    if not isinstance(cancel, bool):
        raise _fail(
            "invalid_type",
            f"'{where}.cancel_with_parent' must be true or false",
            f"{where}.cancel_with_parent",
        )
    task: dict[str, Any] = {
        "callable": SPAWN_CALLABLE,
        "inputs": {
            **inputs,
            WORKFLOW_INPUT: target,
            FAILURE_INPUT: policy,
            CANCEL_INPUT: cancel,
        },
    }
    if "outputs" in conf:
        task["outputs"] = conf["outputs"]
    return task


def _rewritten(name: str, document: Any, workflows: dict) -> tuple[dict[str, Any], bool]:
    where = f"workflows.{name}"
    if not isinstance(document, dict):
        raise _fail("invalid_type", f"'{where}' must be a workflow mapping", where)
    tasks = document.get("tasks")
    if not isinstance(tasks, dict):
        return document, False
    rewritten, spawns = {}, False
    for task_name, conf in tasks.items():
        if isinstance(conf, dict) and "spawn" in conf:
            spawns = True
            rewritten[task_name] = _rewrite_spawn(
                name, f"{where}.tasks.{task_name}", conf, workflows
            )
        else:
            rewritten[task_name] = conf
    return {**document, "tasks": rewritten}, spawns


def _reaches_spawn(entry: str, spawning: set[str], targets: dict[str, set[str]]) -> bool:
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in spawning:
            return True
        todo.extend(targets.get(name, ()))
    return False


def parse_bundle(raw: bytes, pm: Any, context: WorkflowContext) -> Bundle:
    """Parse, rewrite and check a bundle; :class:`PolicyViolation` (422/413) when refused."""
    settings = context.settings
    document = parse_workflow_yaml(
        raw, settings.workflow_yaml_max_bytes, settings.max_nesting_depth
    )
    unknown = set(document) - BUNDLE_KEYS
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise _fail(
            "unknown_key", f"unknown key '{key}'; a bundle has version, workflows, submit", key
        )
    version = document.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise _fail("invalid_type", "'version' must be an integer", "version")
    workflows = document.get("workflows")
    if not isinstance(workflows, dict) or not workflows:
        raise _fail("missing_key", "'workflows' must map names to workflows", "workflows")
    for name in workflows:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise _fail("invalid_type", "workflow names must be non-empty strings", "workflows")
    submit = document.get("submit")
    if not isinstance(submit, dict) or set(submit) - SUBMIT_KEYS:
        raise _fail("invalid_type", "'submit' must be {entry_workflow, inputs}", "submit")
    entry = submit.get("entry_workflow")
    if entry not in workflows:
        raise _fail(
            "unknown_entry_workflow",
            f"'submit.entry_workflow' {entry!r} is not one of the bundle's workflows",
            "submit.entry_workflow",
        )
    inputs = submit.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise _fail("invalid_type", "'submit.inputs' must be a mapping", "submit.inputs")
    texts: dict[str, str] = {}
    spawning: set[str] = set()
    targets: dict[str, set[str]] = {}
    entry_document: dict[str, Any] = {}
    for name, workflow in workflows.items():
        rewritten, spawns = _rewritten(name, workflow, workflows)
        if spawns:
            spawning.add(name)
        targets[name] = {
            conf["inputs"][WORKFLOW_INPUT]
            for conf in (rewritten.get("tasks") or {}).values()
            if isinstance(conf, dict) and conf.get("callable") == SPAWN_CALLABLE
        }
        text = yaml.safe_dump(rewritten, sort_keys=False, allow_unicode=True)
        workflow_context = WorkflowContext(
            settings=settings,
            flow_name=name,
            tag=context.tag,
            tenant_id=context.tenant_id,
            where=context.where,
        )
        try:
            checked = check_workflow_yaml(pm, text.encode("utf-8"), workflow_context)
        except PolicyViolation as violation:
            raise PolicyViolation(
                violation.reason, f"workflow {name!r}: {violation.detail}", violation.key
            ) from None
        texts[name] = text
        if name == entry:
            entry_document = checked
    return Bundle(
        workflows=texts,
        entry=entry,
        params={**workflow_defaults(entry_document), **inputs},
        spawns=_reaches_spawn(entry, spawning, targets),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
