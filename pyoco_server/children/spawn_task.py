"""How the gateway rewrites a bundle's ``spawn: <workflow>`` task: the callable it becomes and
its reserved inputs (the worker's ``worker/children/yaml_spawn.py`` implements the callable)."""

SPAWN_CALLABLE = "pyoco_server.worker.children.yaml_spawn:spawn_child"
WORKFLOW_INPUT = "_spawn_workflow"
FAILURE_INPUT = "_on_child_failure"
CANCEL_INPUT = "_cancel_with_parent"
