"""``pyoco-client schedule ...`` and the 0.7.0 spellings ``schedule-yaml``, ``schedules`` and
``schedule-runs``: create, list, inspect, pause/resume, edit, backfill and delete schedules.

Registered by :func:`add_schedule_commands` from ``cli/client.py``. Every command prints JSON
on stdout (``--output table`` for people on the listings).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..client import PyocoHttpClient
from .common import EXIT_OK
from .output import UsageError, print_json, print_table
from .params import collect_params

TRIGGER_HELP = (
    "exactly one of --run-at, --interval-seconds or --cron; times are ISO 8601 with an offset "
    "(2026-01-01T09:00:00+09:00) or epoch seconds"
)
LIST_COLUMNS = ["schedule_id", "status", "schedule_type", "flow_name", "next_run_at", "last_run_id"]
RUN_COLUMNS = ["run_id", "status", "flow_name", "tag", "updated_at"]


def _time(text: str | None) -> Any:
    """A time flag as the API takes it: a number stays a number, anything else is ISO text."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _trigger_and_policies(args: argparse.Namespace) -> dict[str, Any]:
    given = [flag for flag in ("run_at", "interval_seconds", "cron") if getattr(args, flag)]
    if len(given) != 1:
        raise UsageError(TRIGGER_HELP)
    body: dict[str, Any] = {
        "run_at": _time(args.run_at),
        "interval_seconds": args.interval_seconds,
        "start_at": _time(args.start_at),
        "cron": args.cron,
        "timezone": args.timezone,
        "end_at": _time(args.end_at),
        "jitter_sec": args.jitter_sec,
        "catchup": args.catchup,
        "catchup_window_sec": args.catchup_window_sec,
        "max_catchup": args.max_catchup,
        "overlap": args.overlap,
    }
    if args.paused:
        body["paused"] = True
    return {key: value for key, value in body.items() if value is not None}


def cmd_create(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    body = {"flow_name": args.flow_name, "params": collect_params(args)}
    body.update(_trigger_and_policies(args))
    if args.tag:
        body["tag"] = args.tag
    print_json(client._json("POST", "/schedules", retry=False, json=body))
    return EXIT_OK


def cmd_create_yaml(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    path = Path(args.workflow_file)
    if not path.is_file():
        raise UsageError(f"--workflow-file {path}: no such file")
    fields = {key: str(value) for key, value in _trigger_and_policies(args).items()}
    fields["flow_name"] = args.flow_name
    if args.tag:
        fields["tag"] = args.tag
    files = {"workflow": (path.name, path.read_bytes(), "application/x-yaml")}
    print_json(client._json("POST", "/schedules/yaml", retry=False, data=fields, files=files))
    return EXIT_OK


def cmd_list(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    wanted = (("status", args.status), ("limit", args.limit))
    params = {key: value for key, value in wanted if value}
    schedules = client._json("GET", "/schedules", params=params)
    if args.output == "table":
        print_table(schedules, LIST_COLUMNS)
    else:
        print_json(schedules)
    return EXIT_OK


def cmd_get(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client._json("GET", f"/schedules/{args.schedule_id}"))
    return EXIT_OK


def cmd_runs(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    params = {"limit": args.limit} if args.limit else {}
    runs = client._json("GET", f"/schedules/{args.schedule_id}/runs", params=params)
    if args.output == "table":
        print_table(runs, RUN_COLUMNS)
    else:
        print_json(runs)
    return EXIT_OK


def _patch(client: PyocoHttpClient, schedule_id: str, body: dict[str, Any]) -> int:
    print_json(client._json("PATCH", f"/schedules/{schedule_id}", json=body))
    return EXIT_OK


def cmd_pause(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    return _patch(client, args.schedule_id, {"paused": True})


def cmd_resume(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"paused": False}
    if args.resume_from:
        body["resume_from"] = _time(args.resume_from)
    return _patch(client, args.schedule_id, body)


def cmd_update(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    body = {
        key: value
        for key, value in (
            ("catchup", args.catchup),
            ("catchup_window_sec", args.catchup_window_sec),
            ("max_catchup", args.max_catchup),
            ("overlap", args.overlap),
            ("jitter_sec", args.jitter_sec),
            ("end_at", _time(args.end_at)),
        )
        if value is not None
    }
    if not body:
        raise UsageError("nothing to change: give at least one option")
    return _patch(client, args.schedule_id, body)


def cmd_backfill(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    body = {"start": _time(args.start), "end": _time(args.end)}
    print_json(
        client._json("POST", f"/schedules/{args.schedule_id}/backfill", retry=False, json=body)
    )
    return EXIT_OK


def cmd_delete(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client._json("DELETE", f"/schedules/{args.schedule_id}"))
    return EXIT_OK


def _add_policies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catchup",
        choices=("latest", "all", "skip"),
        help="after downtime: one run for the gap (latest, the default), every missed slot "
        "(all, capped by --max-catchup) or none (skip)",
    )
    parser.add_argument(
        "--catchup-window-sec", type=float, help="only slots this recent are caught up [86400]"
    )
    parser.add_argument("--max-catchup", type=int, help="with --catchup all: at most N [100]")
    parser.add_argument(
        "--overlap",
        choices=("allow", "skip", "buffer_one", "cancel_previous"),
        help="when the previous run is still active: fire anyway (allow, the default), skip "
        "the slot, keep one slot for later (buffer_one) or cancel the previous run",
    )
    parser.add_argument(
        "--jitter-sec", type=float, help="delay each firing by a fixed-per-slot 0..N seconds"
    )


def _add_trigger(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trigger", TRIGGER_HELP)
    group.add_argument("--run-at", help="fire once at this time")
    group.add_argument("--interval-seconds", type=float, help="fire every N seconds")
    group.add_argument("--start-at", help="with --interval-seconds: the first slot [now + N]")
    group.add_argument("--cron", help="5 or 6 cron fields, e.g. '30 2 * * *'")
    group.add_argument("--timezone", help="IANA time zone of --cron [UTC]")
    group.add_argument("--end-at", help="no firing after this time")
    parser.add_argument("--paused", action="store_true", help="create it paused")
    _add_policies(parser)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flow-name", required=True)
    parser.add_argument("--tag", help="queue tag (default: the server's PYOCO_DEFAULT_TAG)")


def _add_create(actions: Any, name: str, help_text: str) -> None:
    create = actions.add_parser(name, help=help_text)
    _add_target(create)
    create.add_argument("--params", help="params as a JSON object")
    create.add_argument("--params-file", help="params from a JSON or YAML file")
    create.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="one param (repeatable)"
    )
    _add_trigger(create)
    create.set_defaults(handler=cmd_create)


def _add_create_yaml(actions: Any, name: str, help_text: str) -> None:
    create = actions.add_parser(name, help=help_text)
    create.add_argument("--workflow-file", required=True, help="a single-flow flow.yaml")
    _add_target(create)
    _add_trigger(create)
    create.set_defaults(handler=cmd_create_yaml)


def _add_list(actions: Any, name: str, help_text: str) -> None:
    listing = actions.add_parser(name, help=help_text)
    listing.add_argument("--status", choices=("ACTIVE", "PAUSED", "COMPLETED"))
    listing.add_argument("--limit", type=int, help="at most N (1..200)")
    listing.add_argument("--output", choices=("json", "table"), default="json")
    listing.set_defaults(handler=cmd_list)


def _add_runs(actions: Any, name: str, help_text: str) -> None:
    runs = actions.add_parser(name, help=help_text)
    runs.add_argument("schedule_id")
    runs.add_argument("--limit", type=int, help="at most N (1..200) [50]")
    runs.add_argument("--output", choices=("json", "table"), default="json")
    runs.set_defaults(handler=cmd_runs)


def add_schedule_commands(commands: Any) -> None:
    """Add ``schedule ...`` and the 0.7.0 commands to ``pyoco-client``'s sub-commands."""
    schedule = commands.add_parser(
        "schedule",
        help="cron, interval and one-shot schedules",
        description="Create and manage schedules: each slot fires exactly once, whatever the "
        "number of gateways.",
    )
    actions = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_create(actions, "create", "schedule a named flow")
    _add_create_yaml(actions, "create-yaml", "schedule a single-flow flow.yaml")
    _add_list(actions, "list", "the schedules, newest first")
    get = actions.add_parser("get", help="one schedule with its next 10 fire times")
    get.add_argument("schedule_id")
    get.set_defaults(handler=cmd_get)
    _add_runs(actions, "runs", "the runs a schedule created")
    pause = actions.add_parser("pause", help="stop firing until resumed")
    pause.add_argument("schedule_id")
    pause.set_defaults(handler=cmd_pause)
    resume = actions.add_parser("resume", help="fire again (the paused time is not caught up)")
    resume.add_argument("schedule_id")
    resume.add_argument(
        "--resume-from", help="catch up from this time instead (per the catch-up policy)"
    )
    resume.set_defaults(handler=cmd_resume)
    update = actions.add_parser("update", help="change policies or the end time")
    update.add_argument("schedule_id")
    _add_policies(update)
    update.add_argument("--end-at", help="no firing after this time")
    update.set_defaults(handler=cmd_update)
    backfill = actions.add_parser(
        "backfill", help="create the runs of past slots (idempotent: existing ones are kept)"
    )
    backfill.add_argument("schedule_id")
    backfill.add_argument("--start", required=True, help="first time of the range")
    backfill.add_argument("--end", required=True, help="last time of the range (not future)")
    backfill.set_defaults(handler=cmd_backfill)
    delete = actions.add_parser("delete", help="delete a schedule (its runs stay)")
    delete.add_argument("schedule_id")
    delete.set_defaults(handler=cmd_delete)

    # The 0.7.0 spellings.
    _add_create_yaml(commands, "schedule-yaml", "schedule a flow.yaml (0.7.0 form)")
    _add_list(commands, "schedules", "the schedules (0.7.0 form of `schedule list`)")
    _add_runs(commands, "schedule-runs", "a schedule's runs (0.7.0 form of `schedule runs`)")
