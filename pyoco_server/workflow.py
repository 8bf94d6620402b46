"""Safe parsing of single-flow ``flow.yaml`` documents and flow building with pyoco's loader.

Nothing here executes content of the document: YAML is read with a safe loader that also
refuses aliases (no "billion laughs"), and the graph is compiled by pyoco's own DSL parser.
Callables are imported only by :func:`build_flow`, which the worker calls after every
``pyoco_check_workflow_yaml`` hook accepted the document.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any

from .errors import PolicyViolation
from .model import ResolvedFlow, WorkflowContext
from .nesting import DEFAULT_MAX_NESTING_DEPTH
from .text import has_lone_surrogate

#: Keys pyoco 0.8 accepts in a single-flow file, per level.
TOP_LEVEL_KEYS = frozenset({"version", "flow", "tasks", "pipes", "runtime"})
FLOW_KEYS = frozenset({"graph", "defaults"})
TASK_KEYS = frozenset({"callable", "use", "inputs", "outputs"})
RUNTIME_KEYS = frozenset({"expose_env"})
FORBIDDEN_KEYS = frozenset({"flows", "discovery"})


@functools.cache
def _loader_class() -> Any:
    """The safe loader, made on first use: PyYAML is imported only by processes that parse a
    workflow (a worker host never does; docs/worker.md, "Memory")."""
    import yaml

    class _NoAliasSafeLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses anchors/aliases, so a small file cannot expand, and
        collections nested deeper than ``max_depth`` (checked while composing, before the
        recursion could get deep)."""

        max_depth = DEFAULT_MAX_NESTING_DEPTH
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise PolicyViolation(
                    "yaml_alias_not_allowed",
                    f"YAML aliases are not accepted (line {event.start_mark.line + 1})",
                    "*" + str(event.anchor),
                )
            nested = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
            if nested:
                self._depth += 1
                if self._depth > self.max_depth:
                    event = self.peek_event()
                    raise PolicyViolation(
                        "too_deep",
                        f"workflow YAML nests deeper than {self.max_depth} levels at line "
                        f"{event.start_mark.line + 1} (PYOCO_MAX_NESTING_DEPTH={self.max_depth})",
                    )
            try:
                return super().compose_node(parent, index)
            finally:
                if nested:
                    self._depth -= 1

    return _NoAliasSafeLoader


def _load(text: str, max_depth: int) -> Any:
    loader = _loader_class()(text)
    loader.max_depth = max_depth
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_workflow_yaml(
    raw: bytes, max_bytes: int, max_depth: int = DEFAULT_MAX_NESTING_DEPTH
) -> dict[str, Any]:
    """Parse an uploaded workflow; raise :class:`PolicyViolation` when it is not a mapping.

    Reason codes: ``too_large`` (over ``max_bytes``), ``invalid_encoding``, ``invalid_yaml``,
    ``yaml_alias_not_allowed``, ``too_deep`` (collections nested deeper than ``max_depth``),
    ``not_a_mapping``.
    """
    if len(raw) > max_bytes:
        raise PolicyViolation(
            "too_large",
            f"workflow YAML is {len(raw)} bytes; the limit is {max_bytes} "
            "(PYOCO_WORKFLOW_YAML_MAX_BYTES)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyViolation("invalid_encoding", f"workflow YAML is not UTF-8: {exc}") from None
    import yaml

    try:
        document = _load(text, max_depth)
    except yaml.YAMLError as exc:
        raise PolicyViolation("invalid_yaml", _yaml_error_text(exc)) from None
    except RecursionError:
        raise PolicyViolation(
            "too_deep", f"workflow YAML nests deeper than {max_depth} levels"
        ) from None
    if not isinstance(document, dict):
        raise PolicyViolation(
            "not_a_mapping", "workflow YAML must be a mapping with 'flow' and 'tasks'"
        )
    if has_lone_surrogate(document):
        raise PolicyViolation(
            "invalid_encoding", "workflow YAML escapes a lone UTF-16 surrogate, which is not text"
        )
    return document


def check_workflow_yaml(pm: Any, raw: bytes, context: WorkflowContext) -> dict[str, Any]:
    """Parse an uploaded workflow and run every ``pyoco_check_workflow_yaml`` hook on it.

    The one policy check of a workflow YAML, wherever it happens (``POST /runs/yaml``, a
    redrive, the worker before building): parsing caps it at ``PYOCO_WORKFLOW_YAML_MAX_BYTES``
    and ``PYOCO_MAX_NESTING_DEPTH`` of ``context.settings``. Returns the accepted document;
    raises :class:`PolicyViolation` (from the parser or from a hook) otherwise.
    """
    settings = context.settings
    document = parse_workflow_yaml(
        raw, settings.workflow_yaml_max_bytes, settings.max_nesting_depth
    )
    pm.hook.pyoco_check_workflow_yaml(document=document, raw=raw, context=context)
    return document


def _yaml_error_text(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


def workflow_defaults(document: dict[str, Any]) -> dict[str, Any]:
    """The ``flow.defaults`` mapping of an accepted document (empty when absent)."""
    flow = document.get("flow")
    defaults = flow.get("defaults") if isinstance(flow, dict) else None
    return dict(defaults) if isinstance(defaults, dict) else {}


def build_pyoco_config(document: dict[str, Any]) -> Any:
    """Build pyoco's ``PyocoConfig`` from an accepted document (no file, no ``exec``)."""
    from pyoco.schemas.config import FlowConfig, PyocoConfig, RuntimeConfig, TaskConfig

    flow = document["flow"]
    tasks = {
        name: TaskConfig(
            callable=conf.get("callable"),
            use=conf.get("use"),
            inputs=dict(conf.get("inputs") or {}),
            outputs=list(conf.get("outputs") or []),
        )
        for name, conf in (document.get("tasks") or {}).items()
    }
    runtime = document.get("runtime") or {}
    return PyocoConfig(
        version=document.get("version", 1),
        flow=FlowConfig(graph=flow["graph"], defaults=dict(flow.get("defaults") or {})),
        tasks=tasks,
        pipes=dict(document.get("pipes") or {}),
        runtime=RuntimeConfig(expose_env=list(runtime.get("expose_env") or [])),
    )


def build_flow(
    document: dict[str, Any], flow_name: str, params: dict[str, Any] | None
) -> ResolvedFlow:
    """Build a fresh pyoco flow from an accepted document with pyoco 0.8's own loader.

    Params are ``flow.defaults`` overlaid with ``params``. Raises ``ValueError`` (pyoco's graph
    errors) or ``LookupError`` when a task cannot be resolved.
    """
    from pyoco.discovery.loader import TaskLoader
    from pyoco.dsl.graph import build_flow_from_graph

    config = build_pyoco_config(document)
    loader = TaskLoader(config, strict=False)
    noise = io.StringIO()
    with contextlib.redirect_stdout(noise):  # pyoco prints import problems instead of raising
        loader.load()
    missing = [name for name in config.tasks if name not in loader.tasks]
    if missing:
        printed = noise.getvalue().strip().splitlines()
        detail = printed[-1] if printed else "could not be loaded"
        raise LookupError(f"task {missing[0]!r}: {detail}")
    flow = build_flow_from_graph(
        graph=config.flow.graph, tasks=loader.tasks, pipes=config.pipes, flow_name=flow_name
    )
    return ResolvedFlow(flow=flow, params={**workflow_defaults(document), **(params or {})})
