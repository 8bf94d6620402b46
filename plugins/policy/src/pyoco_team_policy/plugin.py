"""The pyoco-server plugin (entry point ``team-policy``): narrow the workflow YAML policy.

It adds rules on top of the built-in ``yaml_policy`` (which still runs: both must accept a
document). A rejection raises ``PolicyViolation`` with one of this plugin's reason codes; the
gateway answers ``422`` with ``{"reason": ..., "key": ...}`` in the body, and a worker that
sees the same document fails the run with ``policy_violation``.

| reason | when |
|---|---|
| ``version_required`` | the document has no ``version`` key |
| ``version_not_accepted`` | ``version`` is not in ``PYOCO_POLICY_VERSIONS`` |
| ``too_many_tasks`` | more tasks than ``PYOCO_POLICY_MAX_TASKS`` |
| ``tag_not_allowed`` | the run's tag is not allowed for its flow (``PYOCO_POLICY_FLOW_TAGS``) |
"""

from __future__ import annotations

from typing import Any

from pyoco_server.errors import PolicyViolation
from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import WorkflowContext

from .rules import FLOW_TAGS_ENV, MAX_TASKS_ENV, VERSIONS_ENV, PolicyRules


class TeamPolicy:
    """Rejects workflow YAML that breaks the team's :class:`PolicyRules`."""

    def __init__(self, rules: PolicyRules) -> None:
        self.rules = rules

    @hookimpl
    def pyoco_check_workflow_yaml(
        self, document: dict[str, Any], raw: bytes, context: WorkflowContext
    ) -> None:
        """Check ``version``, the number of tasks and the flow's tag (see module docstring)."""
        self.check_version(document)
        self.check_task_count(document)
        self.check_tag(context)

    def check_version(self, document: dict[str, Any]) -> None:
        if "version" not in document:
            raise PolicyViolation(
                "version_required", "the workflow must declare its 'version'", "version"
            )
        version = document["version"]
        if version not in self.rules.versions or isinstance(version, bool):
            accepted = ", ".join(str(v) for v in sorted(self.rules.versions))
            raise PolicyViolation(
                "version_not_accepted",
                f"version {version!r} is not accepted here (accepted: {accepted}; {VERSIONS_ENV})",
                "version",
            )

    def check_task_count(self, document: dict[str, Any]) -> None:
        tasks = document.get("tasks") or {}
        if isinstance(tasks, dict) and len(tasks) > self.rules.max_tasks:
            raise PolicyViolation(
                "too_many_tasks",
                f"the workflow defines {len(tasks)} tasks; at most {self.rules.max_tasks} "
                f"are allowed ({MAX_TASKS_ENV})",
                "tasks",
            )

    def check_tag(self, context: WorkflowContext) -> None:
        allowed = self.rules.allowed_tags(context.flow_name)
        if allowed is None or context.tag in allowed:
            return
        raise PolicyViolation(
            "tag_not_allowed",
            f"flow {context.flow_name!r} may only run on tag(s) {', '.join(sorted(allowed))}, "
            f"not {context.tag!r} ({FLOW_TAGS_ENV})",
            context.tag,
        )


#: The instance the entry point names, configured from ``PYOCO_POLICY_*`` at import.
plugin = TeamPolicy(PolicyRules.from_env())
