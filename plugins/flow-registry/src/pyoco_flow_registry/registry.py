"""A registry of flow *builders*: each job gets a freshly built flow.

pyoco's ``Task`` objects are mutable: wiring one with ``>>`` adds edges to the object itself.
A flow built once and kept, or module-level tasks wired again for every job, would let edges
leak from one run into the next. So the registry keeps functions that build a flow and calls
one per job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyoco import Flow

from pyoco_server.model import ResolvedFlow

Builder = Callable[[], Flow]


@dataclass(frozen=True)
class RegisteredFlow:
    """One flow of the registry: how to build it and the params it runs with by default."""

    name: str
    build: Builder
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class FlowRegistry:
    """Flows by name; ``resolve(name, params)`` builds a fresh one for a job."""

    def __init__(self) -> None:
        self._flows: dict[str, RegisteredFlow] = {}

    def flow(
        self, name: str, *, defaults: dict[str, Any] | None = None, description: str = ""
    ) -> Callable[[Builder], Builder]:
        """Decorator: register a builder function under ``name``."""

        def register(build: Builder) -> Builder:
            if name in self._flows:
                raise ValueError(f"flow {name!r} is registered twice")
            summary = description or next(iter((build.__doc__ or "").strip().splitlines()), "")
            self._flows[name] = RegisteredFlow(name, build, dict(defaults or {}), summary)
            return build

        return register

    def names(self) -> list[str]:
        """Every registered flow name, sorted."""
        return sorted(self._flows)

    def get(self, name: str) -> RegisteredFlow | None:
        return self._flows.get(name)

    def resolve(self, name: str, params: dict[str, Any] | None = None) -> ResolvedFlow | None:
        """A freshly built flow and its params (defaults under ``params``), or ``None``."""
        entry = self._flows.get(name)
        if entry is None:
            return None
        flow = entry.build()
        if not isinstance(flow, Flow):
            raise TypeError(f"builder of {name!r} returned {type(flow).__name__}, not a Flow")
        flow.name = name
        return ResolvedFlow(flow, {**entry.defaults, **(params or {})})
