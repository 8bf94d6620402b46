"""What every pyoco-server command shares: plugin flags, settings, errors and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..config import Settings
from ..errors import PyocoServerError
from ..hook_trace import TRACE_LOGGER, enable_tracing
from ..log import get_logger
from ..plugins import PluginOptions, PyocoPluginManager, build_plugin_manager

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_plugin_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plugins`` and ``-p no:NAME``, as in pytest."""
    parser.add_argument(
        "--plugins",
        metavar="NAME[,NAME...]",
        help="load the built-ins plus only these plugins (entry-point names, package.module "
        "import paths or path/file.py); default: every installed plugin [PYOCO_PLUGINS]",
    )
    parser.add_argument(
        "-p",
        dest="plugin_switches",
        action="append",
        default=[],
        metavar="no:NAME",
        help="-p no:NAME never loads plugin NAME, built-ins included (repeatable) "
        "[PYOCO_DISABLE_PLUGINS]; -p NAME loads NAME in addition to the others",
    )


def add_nats_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url",
        metavar="URL",
        help="NATS server URL, e.g. nats://127.0.0.1:4222; several separated by commas for a "
        "cluster [PYOCO_NATS_URL]",
    )


def load_settings(
    overrides: Mapping[str, Any], flag_names: Mapping[str, str] | None = None
) -> Settings:
    """Settings from the environment with CLI ``overrides`` (field name -> value)."""
    return Settings.from_env(overrides=overrides, flag_names=flag_names)


def plugin_selection(
    args: argparse.Namespace, settings: Settings
) -> tuple[list[str] | None, list[str], list[str]]:
    """``(allow, disable, also)`` from ``--plugins`` / ``-p`` (which win) and the environment."""
    if args.plugins is not None:
        allow = [name.strip() for name in args.plugins.split(",") if name.strip()]
    else:
        allow = list(settings.plugins) if settings.plugins is not None else None
    disable = list(settings.disable_plugins)
    also = []
    for switch in args.plugin_switches:
        if switch.startswith("no:"):
            disable.append(switch[3:])
        else:
            also.append(switch)
    return allow, disable, also


def make_plugin_manager(
    args: argparse.Namespace, settings: Settings, flow_resolver: str | None = None
) -> PyocoPluginManager:
    """Build the plugin manager from ``--plugins`` / ``-p`` (which win) and the environment.

    With ``PYOCO_TRACE_PLUGINS`` on, every hook call is logged (:mod:`pyoco_server.hook_trace`).
    """
    allow, disable, also = plugin_selection(args, settings)
    pm = build_plugin_manager(
        plugins=allow,
        disable=disable,
        also=also,
        options=PluginOptions(flow_resolver=flow_resolver),
    )
    if settings.trace_plugins:
        enable_tracing(pm, get_logger(TRACE_LOGGER))
    return pm


def run_command(func: Callable[[], int]) -> int:
    """Run a command body with the exit-code rules of docs/error-ids.md.

    A :class:`PyocoServerError` prints one line naming its error ID and exits 1; Ctrl-C exits
    130.
    """
    try:
        return func()
    except PyocoServerError as exc:
        print(f"error: {exc.err_id}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
