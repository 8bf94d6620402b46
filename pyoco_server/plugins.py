"""Build the plugin manager: built-ins, entry points, ``--plugins`` and ``-p no:NAME``."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginLoadError

ENTRY_POINT_GROUP = "pyoco_server"
OWN_DISTRIBUTION = "pyoco-server"

#: Built-in plugins, in registration order (pluggy calls the last registered first); each is
#: ``pyoco_server.builtin.<name>``. The only list of them: pyproject.toml declares no entry
#: points for them (its entry points could not keep this order).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "yaml_policy",
    "sha256",
    "dlq",
    "yaml_flow",
    "flow_resolver",
    "schedule_times",
)

SOURCE_BUILTIN = "built-in"
SOURCE_ENTRY_POINT = "entry point"
SOURCE_OPTION = "--plugins"


@dataclass
class PluginOptions:
    """Run-time inputs that built-in plugins need (for example ``--flow-resolver``)."""

    flow_resolver: str | None = None


@dataclass
class PluginInfo:
    """One loaded plugin, as listed by ``pyoco-server plugins``."""

    name: str
    source: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
        }


class PyocoPluginManager(pluggy.PluginManager):
    """A pluggy manager that also accepts undecorated ``pyoco_*`` functions as hooks.

    Like pytest does for ``pytest_*``: a plugin that forgot ``@hookimpl`` still has its hooks
    picked up, and a misspelt ``pyoco_*`` name then fails ``check_pending()`` loudly instead of
    being ignored.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or not name.startswith("pyoco_"):
            return opts
        candidate = inspect.getattr_static(plugin, name, None)
        if not inspect.isfunction(candidate) or hasattr(candidate, "pyoco_server_spec"):
            return None
        return {
            "wrapper": False,
            "hookwrapper": False,
            "optionalhook": False,
            "tryfirst": False,
            "trylast": False,
            "specname": None,
        }


def _split_attribute(spec: str) -> tuple[str, str | None]:
    """``target:attr`` → ``(target, attr)``; anything else → ``(spec, None)``."""
    target, sep, attr = spec.rpartition(":")
    if sep and target and attr.isidentifier() and len(target) > 1:
        return target, attr
    return spec, None


def _import_module(spec: str, target: str) -> Any:
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise PluginLoadError(spec, f"file {path} does not exist")
        module_name = f"pyoco_server_plugin_{path.stem}_{abs(hash(str(path))):x}"
        file_spec = importlib.util.spec_from_file_location(module_name, path)
        if file_spec is None or file_spec.loader is None:
            raise PluginLoadError(spec, f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[module_name] = module
        try:
            file_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise PluginLoadError(spec, f"import failed: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise PluginLoadError(spec, f"import failed: {type(exc).__name__}: {exc}") from exc


def _import_path_plugin(spec: str) -> Any:
    """Import a plugin given as ``package.module`` or ``path/to/file.py``.

    Either may end in ``:attr`` to name an object inside the module (a configured plugin
    instance, say) instead of the module itself.
    """
    target, attr = _split_attribute(spec)
    module = _import_module(spec, target)
    if attr is None:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginLoadError(spec, f"{target} has no attribute {attr!r}") from None


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    return found


def entry_point_names() -> set[str]:
    """Names of the entry-point plugins installed (or synced onto ``sys.path``) right now."""
    return set(_entry_points())


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> Any:
    try:
        return entry_point.load()
    except Exception as exc:
        raise PluginLoadError(
            entry_point.name, f"import of {entry_point.value} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _builtin(name: str, options: PluginOptions) -> Any:
    module = importlib.import_module(f"pyoco_server.builtin.{name}")
    factory = getattr(module, "create_plugin", None)
    return factory(options) if factory is not None else module


def _own_version() -> str | None:
    try:
        return importlib.metadata.version(OWN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def _module_name(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__module__


def build_plugin_manager(
    plugins: Sequence[str] | None = None,
    disable: Iterable[str] = (),
    also: Iterable[str] = (),
    extra: Iterable[tuple[str, Any]] = (),
    options: PluginOptions | None = None,
) -> PyocoPluginManager:
    """Create the plugin manager used by a gateway or worker process.

    :param plugins: the allow-list (``--plugins`` / ``PYOCO_PLUGINS``); ``None`` loads every
        installed entry point. Names are entry-point names, ``package.module`` import paths or
        ``path/file.py`` files. Built-ins are always loaded unless disabled.
    :param disable: names never to load (``-p no:NAME`` / ``PYOCO_DISABLE_PLUGINS``),
        built-ins included.
    :param also: names loaded in addition to the selection (``-p NAME``).
    :param extra: ``(name, plugin object)`` pairs registered after everything else (used by
        tests and embedding applications).
    :param options: inputs for the built-in plugins.
    :raises PluginLoadError: an unknown name, a failed import or an invalid hook, naming the
        plugin.
    """
    options = options or PluginOptions()
    pm = PyocoPluginManager()
    blocked = set(disable)
    for name in blocked:
        pm.set_blocked(name)

    def register(name: str, plugin: Any, source: str, dist: str | None, version: str | None):
        if name in blocked:
            return
        if pm.get_plugin(name) is not None:
            raise PluginLoadError(name, "a plugin with this name is already loaded")
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(name, str(exc)) from exc
        pm.infos[name] = PluginInfo(name, source, _module_name(plugin), dist, version)

    own_version = _own_version()
    for name in BUILTIN_PLUGINS:
        if name not in blocked:
            register(name, _builtin(name, options), SOURCE_BUILTIN, OWN_DISTRIBUTION, own_version)

    installed = _entry_points()
    if plugins is None:
        wanted = [(name, SOURCE_ENTRY_POINT) for name in installed]
    else:
        wanted = [(name, SOURCE_OPTION) for name in plugins if name not in BUILTIN_PLUGINS]
    wanted += [(name, SOURCE_OPTION) for name in also if name not in BUILTIN_PLUGINS]
    for name, source in wanted:
        if name in blocked or pm.get_plugin(name) is not None:
            continue
        entry_point = installed.get(name)
        if entry_point is not None:
            dist = entry_point.dist
            register(
                name,
                _load_entry_point(entry_point),
                source,
                dist.name if dist else None,
                dist.version if dist else None,
            )
        elif any(mark in name for mark in (".", "/", ":")):
            register(name, _import_path_plugin(name), source, None, None)
        else:
            known = ", ".join(sorted([*installed, *BUILTIN_PLUGINS])) or "none"
            raise PluginLoadError(name, f"no installed plugin has this name (installed: {known})")

    for name, plugin in extra:
        register(name, plugin, "registered", None, None)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or _module_name(exc.plugin)
        raise PluginLoadError(name, f"{exc} (no such hook in pyoco_server.hookspecs)") from exc

    for name, info in pm.infos.items():
        plugin = pm.get_plugin(name)
        callers = pm.get_hookcallers(plugin) or []
        info.hooks = sorted(caller.name for caller in callers)
    return pm
