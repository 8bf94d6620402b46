"""Built-in plugin ``yaml_policy``: what an uploaded ``flow.yaml`` may contain.

Closes pyoco's two code-execution / secret-reading channels: ``callable``/``use`` must lie
under a module prefix in ``PYOCO_YAML_ALLOWED_CALLABLES``, and ``$env.NAME`` references need
NAME in both ``runtime.expose_env`` and ``PYOCO_YAML_ALLOWED_ENV``. Also enforces the size cap,
pyoco's single-flow schema (unknown keys anywhere are rejected) and a graph that pyoco's own
DSL parser accepts and whose task names are defined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..children.spawn_task import SPAWN_CALLABLE
from ..errors import PolicyViolation
from ..hookspecs import hookimpl
from ..model import WorkflowContext
from ..workflow import FLOW_KEYS, FORBIDDEN_KEYS, RUNTIME_KEYS, TASK_KEYS, TOP_LEVEL_KEYS

CALLABLE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_]\w*\Z")
USE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\Z")
ENV_REFERENCE = re.compile(r"\$env\.([A-Za-z0-9_]*)")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_PREFIX = "$env."


@hookimpl
def pyoco_check_workflow_yaml(
    document: dict[str, Any], raw: bytes, context: WorkflowContext
) -> None:
    """Reject documents that break the built-in policy (see module docstring)."""
    settings = context.settings
    if len(raw) > settings.workflow_yaml_max_bytes:
        raise PolicyViolation(
            "too_large",
            f"workflow YAML is {len(raw)} bytes; the limit is "
            f"{settings.workflow_yaml_max_bytes} (PYOCO_WORKFLOW_YAML_MAX_BYTES)",
        )
    check_schema(document)
    check_graph(document)
    check_callables(document, settings.yaml_allowed_callables)
    check_env_references(document, settings.yaml_allowed_env)


def _unknown(keys: Any, allowed: frozenset[str], where: str) -> None:
    for key in keys:
        if key in FORBIDDEN_KEYS:
            raise PolicyViolation(
                "forbidden_key",
                f"'{key}' is not accepted: one file holds one flow, and discovery is chosen by "
                "the operator, never by a submitted document",
                f"{where}{key}",
            )
        if key not in allowed:
            raise PolicyViolation(
                "unknown_key",
                f"unknown key '{where}{key}'; accepted here: {', '.join(sorted(allowed))}",
                f"{where}{key}",
            )


def _mapping(value: Any, key: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PolicyViolation("invalid_type", f"'{key}' must be a mapping", key)
    return value


def check_schema(document: dict[str, Any]) -> None:
    """pyoco 0.8 single-flow schema, with unknown keys rejected at every level."""
    _unknown(document, TOP_LEVEL_KEYS, "")
    version = document.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise PolicyViolation("invalid_type", "'version' must be an integer", "version")
    if "flow" not in document:
        raise PolicyViolation("missing_key", "'flow' with a 'graph' is required", "flow")
    flow = _mapping(document["flow"], "flow", required=True)
    _unknown(flow, FLOW_KEYS, "flow.")
    graph = flow.get("graph")
    if not isinstance(graph, str) or not graph.strip():
        raise PolicyViolation(
            "invalid_graph", "'flow.graph' must be a non-empty string", "flow.graph"
        )
    _mapping(flow.get("defaults"), "flow.defaults")
    for key in _mapping(flow.get("defaults"), "flow.defaults"):
        if not isinstance(key, str):
            raise PolicyViolation(
                "invalid_type", "'flow.defaults' keys must be strings", "flow.defaults"
            )
    tasks = _mapping(document.get("tasks"), "tasks", required=True)
    if not tasks:
        raise PolicyViolation("missing_key", "'tasks' must define at least one task", "tasks")
    for name, conf in tasks.items():
        where = f"tasks.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_]\w*$", name):
            raise PolicyViolation("invalid_task_name", "task names must be identifiers", where)
        conf = _mapping(conf, where, required=True)
        _unknown(conf, TASK_KEYS, f"{where}.")
        has_callable, has_use = conf.get("callable") is not None, conf.get("use") is not None
        if has_callable == has_use:
            raise PolicyViolation(
                "invalid_task", f"'{where}' needs exactly one of 'callable' or 'use'", where
            )
        _mapping(conf.get("inputs"), f"{where}.inputs")
        outputs = conf.get("outputs")
        if outputs is not None and (
            not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs)
        ):
            raise PolicyViolation(
                "invalid_type", f"'{where}.outputs' must be a list of strings", f"{where}.outputs"
            )
    pipes = _mapping(document.get("pipes"), "pipes")
    for name, fragment in pipes.items():
        if not isinstance(fragment, str) or not fragment.strip():
            raise PolicyViolation(
                "invalid_type", f"'pipes.{name}' must be a graph string", f"pipes.{name}"
            )
    runtime = _mapping(document.get("runtime"), "runtime")
    _unknown(runtime, RUNTIME_KEYS, "runtime.")
    expose = runtime.get("expose_env")
    if expose is not None and (
        not isinstance(expose, list) or not all(isinstance(e, str) for e in expose)
    ):
        raise PolicyViolation(
            "invalid_type", "'runtime.expose_env' must be a list of names", "runtime.expose_env"
        )


def _task_names(pipeline: Any) -> Iterator[str]:
    from pyoco.dsl.graph_terms import ForEachTerm, RepeatTerm, SwitchTerm, TaskTerm, UntilTerm

    for term in pipeline.terms:
        if isinstance(term, TaskTerm):
            yield term.name
        elif isinstance(term, SwitchTerm):
            for case in term.cases:
                yield from _task_names(case.branch)
            if term.default is not None:
                yield from _task_names(term.default)
        elif isinstance(term, (RepeatTerm, ForEachTerm, UntilTerm)):
            yield from _task_names(term.body)


def _pipeline(document: dict[str, Any]) -> Any:
    """The graph parsed by pyoco's DSL parser, with ``pipe(...)`` references resolved."""
    from pyoco.dsl.graph import parse_graph, resolve_pipe_refs

    graph = document["flow"]["graph"]
    try:
        return resolve_pipe_refs(parse_graph(graph), document.get("pipes") or {})
    except (ValueError, RecursionError) as exc:
        raise PolicyViolation("invalid_graph", f"graph rejected: {exc}", "flow.graph") from None


def _expressions(pipeline: Any) -> Iterator[str]:
    """Every expression of the graph: ``switch(on=)``, ``repeat(count=)``, ``foreach(over=)``,
    ``until(cond=)``, in nested bodies and branches too."""
    from pyoco.dsl.graph_terms import ForEachTerm, RepeatTerm, SwitchTerm, UntilTerm

    for term in pipeline.terms:
        if isinstance(term, SwitchTerm):
            yield term.on
            for case in term.cases:
                yield from _expressions(case.branch)
            if term.default is not None:
                yield from _expressions(term.default)
        elif isinstance(term, RepeatTerm):
            yield term.count
            yield from _expressions(term.body)
        elif isinstance(term, ForEachTerm):
            yield term.over
            yield from _expressions(term.body)
        elif isinstance(term, UntilTerm):
            yield term.cond
            yield from _expressions(term.body)


def check_graph(document: dict[str, Any]) -> None:
    """Parse the graph (and pipes) with pyoco's DSL parser; every task must be defined."""
    from pyoco.dsl.graph import validate_graph_terms

    pipeline = _pipeline(document)
    report = validate_graph_terms(pipeline)
    if report.errors:
        raise PolicyViolation("invalid_graph", "; ".join(report.errors), "flow.graph")
    tasks = document["tasks"]
    for name in _task_names(pipeline):
        if name not in tasks:
            raise PolicyViolation(
                "unknown_task", f"graph uses task '{name}' that 'tasks' does not define", name
            )


def callable_allowed(target: str, allowed: tuple[str, ...]) -> bool:
    """True when ``target`` equals an allowed entry or lies under an allowed module prefix.

    ``pkg.tasks`` allows ``pkg.tasks:f`` and ``pkg.tasks.sub:g`` (not ``pkg.tasks_evil:h``);
    for ``use`` targets, ``team`` allows ``team/name``.
    """
    module = target.split(":", 1)[0]
    for prefix in allowed:
        prefix = prefix.rstrip(".:/")
        if not prefix:
            continue
        if target == prefix or module == prefix:
            return True
        if module.startswith(prefix + ".") or module.startswith(prefix + "/"):
            return True
    return False


def check_callables(document: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Every ``callable``/``use`` must be under an allowed module prefix."""
    for name, conf in document["tasks"].items():
        for key, pattern in (("callable", CALLABLE_PATTERN), ("use", USE_PATTERN)):
            target = conf.get(key)
            if target is None or (key == "callable" and target == SPAWN_CALLABLE):
                continue
            where = f"tasks.{name}.{key}"
            if not isinstance(target, str) or not pattern.match(target):
                raise PolicyViolation(
                    "invalid_callable",
                    f"'{where}' must look like "
                    + ("'package.module:function'" if key == "callable" else "'namespace/name'"),
                    str(target),
                )
            if not allowed:
                raise PolicyViolation(
                    "yaml_runs_disabled",
                    "YAML runs are disabled: the operator must list the module prefixes that "
                    "workflows may call in PYOCO_YAML_ALLOWED_CALLABLES (e.g. "
                    "PYOCO_YAML_ALLOWED_CALLABLES=my_team.tasks) on gateway and workers",
                    target,
                )
            if not callable_allowed(target, allowed):
                raise PolicyViolation(
                    "callable_not_allowed",
                    f"'{target}' is outside the allowed module prefixes ({', '.join(allowed)})",
                    target,
                )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _expression_env_names(expression: str) -> Iterator[str]:
    """Environment variables a graph expression reads, the way pyoco compiles it.

    ``{{ ... }}`` is unwrapped; an expression holding ``$env.``/``$ctx.`` references reads the
    first path segment of each ``$env.<path>``; otherwise a plain path ``env.<NAME>...`` is
    pyoco's shorthand for ``$env.<NAME>...``.
    """
    inner = expression.strip()
    if inner.startswith("{{") and inner.endswith("}}"):
        inner = inner[2:-2].strip()
    if "$env." in inner or "$ctx." in inner:
        for match in re.finditer(r"\$env\.([A-Za-z_][\w.]*)", inner):
            yield match.group(1).split(".")[0]
    elif inner.startswith("env."):
        yield inner[len("env.") :].split(".")[0]


def _env_reads(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(name, where)`` of every environment variable the document could make pyoco read."""
    for name, conf in document["tasks"].items():
        for key, value in (conf.get("inputs") or {}).items():
            # pyoco resolves an input value starting with "$env." as the whole rest.
            if isinstance(value, str) and value.startswith(ENV_PREFIX):
                yield value[len(ENV_PREFIX) :], f"tasks.{name}.inputs.{key}"
    for expression in _expressions(_pipeline(document)):
        for env_name in _expression_env_names(expression):
            yield env_name, expression
    # Anywhere else a "$env." reference is refused unless listed too (defence in depth).
    for text in _strings(document):
        for match in ENV_REFERENCE.finditer(text):
            yield match.group(1), text


def check_env_references(document: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Any environment read (``$env.NAME`` in an input or anywhere, ``env.NAME`` in a graph
    expression) needs NAME in ``runtime.expose_env`` and in the operator's list."""
    exposed = set((document.get("runtime") or {}).get("expose_env") or [])
    for name, text in _env_reads(document):
        if not ENV_NAME.match(name):
            raise PolicyViolation(
                "env_not_allowed", "'$env.' must be followed by a variable name", text
            )
        if name not in exposed:
            raise PolicyViolation(
                "env_not_exposed",
                f"$env.{name} is read but '{name}' is not listed in runtime.expose_env",
                name,
            )
        if name not in allowed:
            raise PolicyViolation(
                "env_not_allowed",
                f"$env.{name} is not allowed by the operator (PYOCO_YAML_ALLOWED_ENV)",
                name,
            )
