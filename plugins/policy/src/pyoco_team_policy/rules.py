"""The team's rules and how they are read from the environment.

* ``PYOCO_POLICY_FLOW_TAGS`` — which queue tags each flow may use:
  ``FLOW=TAG|TAG;FLOW=TAG;*=TAG`` (``*`` covers every flow not named). Empty: any tag.
* ``PYOCO_POLICY_MAX_TASKS`` — the most tasks one workflow may define [20].
* ``PYOCO_POLICY_VERSIONS`` — the accepted values of the (required) ``version`` key,
  comma-separated [1].
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

FLOW_TAGS_ENV = "PYOCO_POLICY_FLOW_TAGS"
MAX_TASKS_ENV = "PYOCO_POLICY_MAX_TASKS"
VERSIONS_ENV = "PYOCO_POLICY_VERSIONS"
ANY_FLOW = "*"
_TAG = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_flow_tags(raw: str) -> dict[str, frozenset[str]]:
    """``"etl=batch|gpu;*=default"`` → ``{"etl": {"batch", "gpu"}, "*": {"default"}}``."""
    rules: dict[str, frozenset[str]] = {}
    for entry in raw.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        flow, sep, tags = entry.partition("=")
        names = {tag.strip() for tag in tags.split("|") if tag.strip()}
        if not sep or not flow.strip() or not names or not all(_TAG.match(t) for t in names):
            raise ValueError(
                f"{FLOW_TAGS_ENV}: {entry!r} is invalid: expected FLOW=TAG[|TAG...] entries "
                "separated by ';' (FLOW may be '*')"
            )
        rules[flow.strip()] = frozenset(names)
    return rules


@dataclass(frozen=True)
class PolicyRules:
    """What the team accepts, beyond the built-in ``yaml_policy``."""

    flow_tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_tasks: int = 20
    versions: frozenset[int] = frozenset({1})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PolicyRules:
        """Read ``PYOCO_POLICY_*``; an invalid value raises ``ValueError`` naming it."""
        environ = os.environ if environ is None else environ
        flow_tags = parse_flow_tags(environ.get(FLOW_TAGS_ENV, ""))
        raw_max = environ.get(MAX_TASKS_ENV, "").strip() or str(cls.max_tasks)
        raw_versions = environ.get(VERSIONS_ENV, "").strip() or "1"
        try:
            max_tasks = int(raw_max)
            if max_tasks < 1:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{MAX_TASKS_ENV}={raw_max!r} is invalid: expected an integer >= 1"
            ) from None
        try:
            versions = frozenset(int(v) for v in raw_versions.split(",") if v.strip())
        except ValueError:
            raise ValueError(
                f"{VERSIONS_ENV}={raw_versions!r} is invalid: expected integers, comma-separated"
            ) from None
        return cls(flow_tags, max_tasks, versions)

    def allowed_tags(self, flow_name: str | None) -> frozenset[str] | None:
        """The tags ``flow_name`` may use, or ``None`` for any."""
        if flow_name is not None and flow_name in self.flow_tags:
            return self.flow_tags[flow_name]
        return self.flow_tags.get(ANY_FLOW)
