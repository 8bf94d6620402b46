"""A team's code-defined pyoco flows, served to pyoco-server workers by name.

``REGISTRY`` holds every flow of the team (see :mod:`pyoco_flow_registry.flows`); the plugin
module :mod:`pyoco_flow_registry.plugin` answers ``pyoco_resolve_flow`` from it.
"""

from .flows import REGISTRY
from .registry import FlowRegistry, RegisteredFlow

__all__ = ["REGISTRY", "FlowRegistry", "RegisteredFlow"]
__version__ = "0.1.0"
