"""``pyoco-client list-vnext`` and ``pyoco-client workers``: the 0.5 listing command lines.

``list-vnext`` takes the flags of ``list`` plus ``--updated-after``, ``--cursor`` and
``--workflow-yaml-sha256`` and prints the delta page ``{"items", "next_cursor"}`` (as a table
followed by ``next_cursor: …`` with ``--output table``). ``workers`` takes ``--scope``,
``--state``, ``--include-hidden``, ``--limit`` and ``--output json|table|plugins``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..client import PyocoHttpClient
from .common import EXIT_OK
from .output import print_json, print_table

RUN_COLUMNS = ["run_id", "status", "flow_name", "tag", "worker_id", "updated_at"]
WORKER_COLUMNS = ["worker_id", "state", "tags", "current_run_id", "heartbeat_at", "hidden"]
PLUGIN_COLUMNS = [
    "worker_id",
    "worker_state",
    "distribution",
    "version",
    "state",
    "reason",
    "active_version",
]
#: 0.5's name of the STOPPED state.
STATE_ALIASES = {"STOPPED_GRACEFUL": "STOPPED"}


def _bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def cmd_list_vnext(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    page = client.list_runs_delta(
        status=args.status,
        flow=args.flow,
        tag=args.tag,
        limit=args.limit,
        full=args.full,
        updated_after=args.updated_after,
        cursor=args.cursor,
        workflow_yaml_sha256=args.workflow_yaml_sha256,
    )
    if args.output == "table":
        print_table(page.get("items") or [], RUN_COLUMNS)
        if page.get("next_cursor"):
            print(f"next_cursor: {page['next_cursor']}", flush=True)
    else:
        print_json(page)
    return EXIT_OK


def add_list_vnext_command(commands: Any) -> None:
    """``pyoco-client list-vnext``."""
    parser = commands.add_parser(
        "list-vnext",
        help="runs changed since a time, page by page (delta listing)",
        description="Runs newest first as {items, next_cursor}; pass --cursor NEXT_CURSOR for "
        "the next page. Poll with --updated-after LAST_SEEN_UPDATED_AT to see only changes.",
    )
    parser.add_argument("--status", help="only runs in this status")
    parser.add_argument("--flow", help="only runs of this flow name")
    parser.add_argument("--tag", help="only runs with this tag")
    parser.add_argument("--limit", type=_bounded_int(1, 200), help="page size, 1..200 [50]")
    parser.add_argument("--full", action="store_true", help="full snapshots instead of summaries")
    parser.add_argument(
        "--updated-after",
        type=float,
        metavar="EPOCH",
        help="only runs updated strictly after this time (epoch seconds, as updated_at)",
    )
    parser.add_argument("--cursor", help="continue after a previous page (its next_cursor)")
    parser.add_argument(
        "--workflow-yaml-sha256", metavar="HEX", help="only runs of this workflow file"
    )
    parser.add_argument(
        "--output",
        choices=("json", "table"),
        default="json",
        help="json: the page as one document [default]; table: rows, then next_cursor:",
    )
    parser.set_defaults(handler=cmd_list_vnext)


def _states(text: str | None) -> list[str]:
    states = []
    for item in (text or "").split(","):
        name = item.strip().upper()
        if name in STATE_ALIASES:
            print(
                f"note: state {name} is called {STATE_ALIASES[name]} here; listing those",
                file=sys.stderr,
            )
            name = STATE_ALIASES[name]
        if name:
            states.append(name)
    return states


def _plugin_rows(workers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """One row per plugin each worker reports (``--plugin-sync``), or one empty row for a
    worker that reports none; and whether any worker reported plugins."""
    rows: list[dict[str, Any]] = []
    reported = False
    for worker in workers:
        base = {"worker_id": worker.get("worker_id"), "worker_state": worker.get("state")}
        plugins = worker.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            rows.append(base)
            continue
        reported = True
        for plugin in plugins:
            rows.append(
                {**base, **(plugin if isinstance(plugin, dict) else {"distribution": plugin})}
            )
    return rows, reported


def cmd_workers(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    workers = client.list_workers(
        state=_states(args.state) or None,
        include_stopped=False if args.exclude_stopped else None,
        scope=args.scope,
        include_hidden=args.include_hidden,
        limit=args.limit,
    )
    if args.output == "table":
        print_table(workers, WORKER_COLUMNS)
    elif args.output == "plugins":
        rows, reported = _plugin_rows(workers)
        print_table(rows, PLUGIN_COLUMNS)
        if workers and not reported:
            print(
                "note: these workers do not report their plugins; `pyoco-server plugins` on a "
                "worker host lists what it loads",
                file=sys.stderr,
            )
    else:
        print_json(workers)
    return EXIT_OK


def add_workers_command(commands: Any) -> None:
    """``pyoco-client workers``."""
    parser = commands.add_parser(
        "workers",
        help="worker hosts and their states",
        description="Workers by id. Default: active ones (RUNNING, IDLE) that are not hidden.",
    )
    parser.add_argument(
        "--scope",
        choices=("active", "all"),
        help="active: RUNNING and IDLE workers [default, unless --state is given]; all: also "
        "STOPPED and DISCONNECTED ones",
    )
    parser.add_argument(
        "--state",
        metavar="S[,S...]",
        help="only IDLE, RUNNING, STOPPED and/or DISCONNECTED (any case; STOPPED_GRACEFUL is "
        "read as STOPPED)",
    )
    parser.add_argument(
        "--include-hidden", action="store_true", help="also workers an operator has hidden"
    )
    parser.add_argument(
        "--limit", type=_bounded_int(1, 500), help="at most N workers, 1..500 [100]"
    )
    parser.add_argument("--exclude-stopped", action="store_true", help="leave STOPPED workers out")
    parser.add_argument(
        "--output",
        choices=("json", "table", "plugins"),
        default="json",
        help="json [default]; table; plugins: one row per plugin a worker reports",
    )
    parser.set_defaults(handler=cmd_workers)
