"""examples/resolver_plugin.py works as documented: loaded by file path on gateway and worker.

(examples/submit.py, hello_flows.py and hello.yaml are exercised by tests/test_docs_quickstart.py.)
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESOLVER_PLUGIN = REPO_ROOT / "examples" / "resolver_plugin.py"


def test_the_minimal_resolver_plugin_serves_countdown(pyoco_system_factory):
    system = pyoco_system_factory(plugins=[str(RESOLVER_PLUGIN)])
    default = system.run("countdown")
    assert default["status"] == "COMPLETED", default
    assert default["task_records"]["liftoff"]["output"] == "3… liftoff!"
    five = system.run("countdown", {"start": 5})
    assert five["task_records"]["count_down"]["output"] == [5, 4, 3, 2, 1, 0]
    assert system.run("hello")["status"] == "FAILED"  # other names are not its business
