"""The pyoco-server plugin (entry point ``flow-registry``): resolve flows from the registry."""

from __future__ import annotations

from typing import Any

from pyoco_server.config import Settings
from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import ResolvedFlow

from .flows import REGISTRY


@hookimpl
def pyoco_resolve_flow(job: dict[str, Any], settings: Settings) -> ResolvedFlow | None:
    """A fresh flow for ``job["flow_name"]`` from the team's registry; ``None`` otherwise.

    YAML runs carry their own flow and are left to the built-in ``yaml_flow`` plugin; names
    the registry does not know are left to the next resolver (``None``).
    """
    if job.get("workflow_yaml"):
        return None
    return REGISTRY.resolve(job["flow_name"], job.get("params") or {})
