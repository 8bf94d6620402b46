"""Built-in plugin ``yaml_flow``: build the flow of a YAML run from the job's workflow."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..hookspecs import hookimpl
from ..model import ResolvedFlow
from ..workflow import build_flow, parse_workflow_yaml


@hookimpl
def pyoco_resolve_flow(job: dict[str, Any], settings: Settings) -> ResolvedFlow | None:
    """Build a fresh flow from ``job["workflow_yaml"]`` with pyoco's loader; ``None`` otherwise.

    The worker has already run every ``pyoco_check_workflow_yaml`` hook on the document.
    ``flow.defaults`` are merged under the job's params.
    """
    text = job.get("workflow_yaml")
    if not text:
        return None
    document = parse_workflow_yaml(
        text.encode("utf-8"), settings.workflow_yaml_max_bytes, settings.max_nesting_depth
    )
    return build_flow(document, job["flow_name"], job.get("params") or {})
