"""A team's stricter rules for uploaded workflow YAML, on top of pyoco-server's own policy."""

from .plugin import TeamPolicy
from .rules import PolicyRules

__all__ = ["PolicyRules", "TeamPolicy"]
__version__ = "0.1.0"
