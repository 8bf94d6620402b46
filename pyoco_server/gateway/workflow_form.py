"""A workflow YAML uploaded as a form (``POST /runs/yaml``, ``POST /schedules/yaml``): read the
form, check the YAML with every ``pyoco_check_workflow_yaml`` hook, build the run request."""

from __future__ import annotations

import dataclasses
import json

import falcon.asgi

from ..model import WorkflowContext
from ..workflow import check_workflow_yaml, workflow_defaults
from .media import FormPart, read_form, required_file
from .services import GatewayServices
from .tenancy import Caller
from .validation import RunRequest, run_request


@dataclasses.dataclass(frozen=True)
class WorkflowForm:
    """A checked workflow form: the run it asks for, the raw YAML and every form field."""

    request: RunRequest
    workflow_yaml: bytes
    fields: dict[str, FormPart]


async def read_workflow_form(
    services: GatewayServices, req: falcon.asgi.Request, caller: Caller
) -> WorkflowForm:
    """Read the form's ``workflow`` file, ``flow_name`` and ``tag``; the YAML passes the policy
    hooks (where="gateway") before anything is stored, and its defaults become the params."""
    settings = services.settings
    form = await read_form(req, settings.workflow_yaml_max_bytes, settings.http_max_body_bytes)
    workflow = required_file(form, "workflow", "the flow.yaml")
    flow_name = form["flow_name"].text() if "flow_name" in form else None
    tag = form["tag"].text().strip() if "tag" in form else ""
    request = run_request(flow_name, {}, tag or None, None, settings)
    document = check_workflow_yaml(
        services.pm,
        workflow.data,
        WorkflowContext(
            settings=settings,
            flow_name=request.flow_name,
            tag=request.tag,
            tenant_id=caller.tenant_id,
            where="gateway",
        ),
    )
    params = json.loads(json.dumps(workflow_defaults(document), default=str))
    return WorkflowForm(dataclasses.replace(request, params=params), workflow.data, form)
