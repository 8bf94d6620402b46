"""Built-in plugin ``flow_resolver``: flows kept in code, named by ``--flow-resolver``.

``--flow-resolver module:func`` or ``path/to/file.py:func`` (split on the last colon) names a
callable ``func(flow_name) -> Flow | None``. It may also accept a second argument, the job.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import PluginLoadError
from ..hookspecs import hookimpl
from ..plugins import PluginOptions


def load_callable(spec: str) -> Callable[..., Any]:
    """Load ``module:func`` or ``path/file.py:func``; raise :class:`PluginLoadError`."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise PluginLoadError(
            "flow_resolver", f"--flow-resolver {spec!r}: expected 'module:func' or 'file.py:func'"
        )
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target).expanduser().resolve()
            module_name = f"pyoco_server_flows_{path.stem}"
            file_spec = importlib.util.spec_from_file_location(module_name, path)
            if file_spec is None or file_spec.loader is None or not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[module_name] = module
            file_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        func = getattr(module, attr)
    except Exception as exc:
        raise PluginLoadError(
            "flow_resolver", f"--flow-resolver {spec!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(func):
        raise PluginLoadError("flow_resolver", f"--flow-resolver {spec!r} is not callable")
    return func


class FlowResolverPlugin:
    """Resolves flows by name through the callable named by ``--flow-resolver``."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        self._func = load_callable(spec) if spec else None
        self._wants_job = False
        if self._func is not None:
            try:
                self._wants_job = len(inspect.signature(self._func).parameters) >= 2
            except (TypeError, ValueError):
                self._wants_job = False

    @hookimpl
    def pyoco_resolve_flow(self, job: dict[str, Any], settings: Settings) -> Any:
        """Call the resolver with the job's ``flow_name`` (and the job, if it takes two args)."""
        if self._func is None or job.get("workflow_yaml"):
            return None
        if self._wants_job:
            return self._func(job["flow_name"], job)
        return self._func(job["flow_name"])


def create_plugin(options: PluginOptions) -> FlowResolverPlugin:
    """Build the plugin for this process from ``--flow-resolver``."""
    return FlowResolverPlugin(options.flow_resolver)
