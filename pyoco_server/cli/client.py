"""``pyoco-client``: submit, inspect, follow and cancel runs from scripts and terminals.

Prints JSON on stdout (one document per result, JSON lines for ``watch``) so scripts keep
working; ``--output table`` / ``--output status`` are for people; live progress goes to stderr,
drawn only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..client import (
    DEFAULT_SERVER,
    PyocoClientError,
    PyocoConnectionError,
    PyocoHttpClient,
    PyocoHttpError,
    WaitTimeout,
)
from ..model import COMPLETED, PENDING_APPROVAL, is_terminal
from .client_listings import add_list_vnext_command, add_workers_command
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .output import UsageError, print_json, print_table
from .params import collect_params
from .params import parse_param as parse_param  # re-exported: scripts import it from here
from .plugins_registry import add_plugin_registry_commands
from .schedules import add_schedule_commands

EPILOG = """exit codes:
  0    success (with --wait: the run COMPLETED)
  1    the request was rejected, the server is unreachable, or the run FAILED/CANCELLED
  2    usage error (bad arguments)
  130  interrupted (Ctrl-C)

environment: PYOCO_SERVER (default server URL), PYOCO_API_KEY (API key),
PYOCO_HTTP_API_KEY_HEADER (header of the key)"""


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


class Progress:
    """Task-by-task progress of one run on stderr: a redrawn bar on a terminal, lines else.

    A run that spawned child runs also shows how many of them have ended
    (``children_done`` of ``child_run_ids``, both in the run's own snapshot).
    """

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_line = ""

    def update(self, snapshot: dict[str, Any]) -> None:
        tasks = snapshot.get("tasks") or {}
        done = sum(1 for state in tasks.values() if state in ("SUCCEEDED", "FAILED", "CANCELLED"))
        current = next((name for name, state in tasks.items() if state == "RUNNING"), "-")
        elapsed = time.monotonic() - self.started
        status = snapshot.get("status", "?")
        children = children_text(snapshot)
        if self.tty:
            total = max(len(tasks), 1)
            filled = int(20 * done / total)
            bar = "#" * filled + "." * (20 - filled)
            line = (
                f"\r[{bar}] {done}/{len(tasks)} tasks{children}  {status:<10} "
                f"current: {current}  {elapsed:6.1f}s"
            )
            self.stream.write(line.ljust(len(self.last_line)))
            self.last_line = line
            if is_terminal(status):
                self.stream.write("\n")
        else:
            line = (
                f"{status} {done}/{len(tasks)} tasks{children} current={current} "
                f"elapsed={elapsed:.1f}s"
            )
            if line.split(" elapsed")[0] != self.last_line.split(" elapsed")[0]:
                self.stream.write(line + "\n")
            self.last_line = line
        self.stream.flush()


def children_text(snapshot: dict[str, Any]) -> str:
    """`` 3/10 children`` for a run with child runs (ended / spawned), else empty."""
    spawned = snapshot.get("child_run_ids") or []
    if not spawned:
        return ""
    ended = sum(1 for child in spawned if child in (snapshot.get("children_done") or {}))
    return f" {ended}/{len(spawned)} children"


def follow(client: PyocoHttpClient, run_id: str, timeout: float | None) -> dict[str, Any]:
    """Follow a run to its end, drawing progress; return the terminal snapshot."""
    progress = Progress()
    final: dict[str, Any] = {}
    for final in client.snapshots(run_id, timeout):
        progress.update(final)
    return final


def _exit_for(snapshot: dict[str, Any]) -> int:
    return EXIT_OK if snapshot.get("status") == COMPLETED else EXIT_ERROR


def cmd_submit(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else None
    result = client.submit_run(args.flow_name, collect_params(args), tag=args.tag, tags=tags)
    return _after_submit(client, args, result)


def cmd_submit_yaml(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    path = Path(args.workflow_file)
    if not path.is_file():
        raise UsageError(f"--workflow-file {path}: no such file")
    result = client.submit_run_yaml(path, args.flow_name, tag=args.tag)
    return _after_submit(client, args, result)


def _after_submit(client: PyocoHttpClient, args: argparse.Namespace, result: dict) -> int:
    if not args.wait:
        print_json(result)
        return EXIT_OK
    final = follow(client, result["run_id"], args.timeout)
    print_json(final)
    return _exit_for(final)


def cmd_submit_bundle(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    path = Path(args.bundle_file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    result = client.submit_bundle(path, tag=args.tag)
    if result.get("status") == PENDING_APPROVAL:
        print(
            f"{result['run_id']} waits for an approval: pyoco-client approve {result['run_id']}",
            file=sys.stderr,
        )
    return _after_submit(client, args, result)


def cmd_approve(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    snapshot = client.approve_run(args.run_id)
    if not args.wait:
        print_json(snapshot)
        return EXIT_OK
    final = follow(client, args.run_id, args.timeout)
    print_json(final)
    return _exit_for(final)


def cmd_reject(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.reject_run(args.run_id, args.reason))
    return EXIT_OK


def cmd_get(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.get_run(args.run_id, include=["records"] if args.records else None))
    return EXIT_OK


def cmd_tasks(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.get_tasks(args.run_id))
    return EXIT_OK


def cmd_list(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    runs = client.list_runs(
        status=args.status, flow=args.flow, tag=args.tag, limit=args.limit, full=args.full
    )
    if args.output == "table":
        print_table(runs, ["run_id", "status", "flow_name", "tag", "worker_id", "updated_at"])
    else:
        print_json(runs)
    return EXIT_OK


#: ``watch --since`` values below this are event ids (KV revisions); others are Unix times.
SINCE_TIMESTAMP_FROM = 1e9


def _since(value: float | None) -> tuple[int | None, float | None]:
    """``(event id, Unix time)`` from ``watch --since`` (one of them set, or neither)."""
    if value is None:
        return None, None
    if value < SINCE_TIMESTAMP_FROM and value == int(value):
        return max(int(value), 0), None
    return None, value


def cmd_watch(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    since_id, since_time = _since(args.since)
    final: dict[str, Any] | None = None
    printed = 0
    events = client.watch_run(
        args.run_id, include_records=args.records, timeout_sec=args.timeout, since_id=since_id
    )
    for event in events:
        if event.event != "snapshot":
            continue
        snapshot = event.data
        if since_time is None or (snapshot.get("updated_at") or 0) >= since_time:
            _print_watched(snapshot, args.output)
            printed += 1
        if is_terminal(snapshot.get("status")):
            final = snapshot
            break
        if args.max_events and printed >= args.max_events:
            return EXIT_OK
    if final is None:
        return EXIT_ERROR if args.until_terminal else EXIT_OK
    return _exit_for(final) if args.until_terminal else EXIT_OK


def _print_watched(snapshot: dict[str, Any], output: str) -> None:
    if output == "status":
        tasks = snapshot.get("tasks") or {}
        states = " ".join(f"{name}={state}" for name, state in tasks.items())
        print(f"{snapshot.get('status')} {states}".rstrip(), flush=True)
    else:
        print_json(snapshot)


def cmd_cancel(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    snapshot = client.cancel_run(args.run_id)
    if args.wait and not is_terminal(snapshot.get("status")):
        snapshot = client.wait(args.run_id, timeout=args.timeout)
    print_json(snapshot)
    return EXIT_OK


DLQ_COLUMNS = ["seq", "timestamp", "reason", "run_id", "flow_name", "tag", "num_delivered", "error"]
#: Longest error shown in a ``dlq list --output table`` cell.
TABLE_ERROR_CHARS = 60


def _dlq_filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"tag": args.tag, "reason": args.reason, "run_id": args.run_id, "limit": args.limit}


def cmd_dlq_list(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    entries, cursor = client.list_dlq_page(before=args.before, **_dlq_filters(args))
    if args.output == "table":
        rows = [
            {**entry, "error": _one_line(entry.get("error"), TABLE_ERROR_CHARS)}
            for entry in entries
        ]
        print_table(rows, DLQ_COLUMNS)
        if cursor is not None:
            print(f"more: pyoco-client dlq list --before {cursor} ...", file=sys.stderr)
    else:
        print_json(entries)
    return EXIT_OK


def _one_line(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cmd_dlq_show(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.get_dlq(args.seq))
    return EXIT_OK


def cmd_dlq_redrive(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.redrive_dlq(args.seq, new_run=args.new_run))
    return EXIT_OK


def cmd_dlq_redrive_all(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    report = client.redrive_dlq_bulk(new_run=args.new_run, **_dlq_filters(args))
    print_json(report)
    return EXIT_ERROR if report.get("failed") else EXIT_OK


def cmd_dlq_delete(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    print_json(client.delete_dlq(args.seq))
    return EXIT_OK


def _add_dlq_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", help="only entries of this tag")
    parser.add_argument(
        "--reason", help="only entries with this reason (execution_error, lost, max_deliveries…)"
    )
    parser.add_argument("--run-id", help="only entries of this run")
    parser.add_argument("--limit", type=int, help="at most N entries (1..200, default 50)")


def add_dlq_commands(commands: Any) -> None:
    """``pyoco-client dlq list|show|redrive|redrive-all|delete``."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: list, show, redrive, delete",
        description="Inspect and act on the dead-letter queue (failed jobs).",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="dead letters, newest first")
    _add_dlq_filters(listing)
    listing.add_argument("--before", type=int, help="only entries older than this seq")
    listing.add_argument("--output", choices=("json", "table"), default="json")
    listing.set_defaults(handler=cmd_dlq_list)

    show = actions.add_parser("show", help="one dead letter with its original job")
    show.add_argument("seq", type=int)
    show.set_defaults(handler=cmd_dlq_show)

    redrive = actions.add_parser(
        "redrive", help="queue the dead job again as a new attempt of its run"
    )
    redrive.add_argument("seq", type=int)
    redrive.add_argument("--new-run", action="store_true", help="queue it as a fresh run")
    redrive.set_defaults(handler=cmd_dlq_redrive)

    redrive_all = actions.add_parser(
        "redrive-all",
        help="redrive every entry `dlq list` shows with the same filters",
        description="Redrive, newest first, the entries `dlq list` shows with the same "
        "filters; prints a report (exit 1 when some failed).",
    )
    _add_dlq_filters(redrive_all)
    redrive_all.add_argument("--new-run", action="store_true", help="queue them as fresh runs")
    redrive_all.set_defaults(handler=cmd_dlq_redrive_all)

    delete = actions.add_parser("delete", help="remove a dead letter")
    delete.add_argument("seq", type=int)
    delete.set_defaults(handler=cmd_dlq_delete)


def cmd_metrics(client: PyocoHttpClient, args: argparse.Namespace) -> int:
    sys.stdout.write(client.metrics())
    return EXIT_OK


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the run to its end (progress on stderr); exit 0 only if it COMPLETED",
    )
    parser.add_argument("--timeout", type=float, help="with --wait: give up after N seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyoco-client",
        description="Command-line client of a pyoco-server gateway. Prints JSON on stdout.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("PYOCO_SERVER", DEFAULT_SERVER),
        help=f"gateway URL [PYOCO_SERVER or {DEFAULT_SERVER}]",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("PYOCO_API_KEY"), help="API key [PYOCO_API_KEY]"
    )
    parser.add_argument(
        "--api-key-header",
        default=os.environ.get("PYOCO_HTTP_API_KEY_HEADER") or "X-API-Key",
        metavar="NAME",
        help="HTTP header that carries the key [PYOCO_HTTP_API_KEY_HEADER or X-API-Key]",
    )
    parser.add_argument("--version", action="version", version=f"pyoco-client {__version__}")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="seconds [10]")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = commands.add_parser("submit", help="submit a run of a named flow")
    submit.add_argument("--flow-name", required=True)
    submit.add_argument("--params", help="params as a JSON object")
    submit.add_argument("--params-file", help="params from a JSON or YAML file")
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one param (repeatable); VALUE is JSON-decoded when it parses (n=3 is a number)",
    )
    submit.add_argument("--tag", help="queue tag (default: the server's PYOCO_DEFAULT_TAG)")
    submit.add_argument("--tags", help="comma-separated tags recorded on the run")
    _add_wait(submit)
    submit.set_defaults(handler=cmd_submit)

    submit_yaml = commands.add_parser("submit-yaml", help="submit a single-flow flow.yaml")
    submit_yaml.add_argument("--workflow-file", required=True)
    submit_yaml.add_argument("--flow-name", required=True)
    submit_yaml.add_argument("--tag")
    _add_wait(submit_yaml)
    submit_yaml.set_defaults(handler=cmd_submit_yaml)

    submit_bundle = commands.add_parser(
        "submit-bundle",
        help="submit a spawn bundle (workflows whose tasks may spawn child runs)",
        description="Submit a spawn bundle (POST /runs/bundle). A bundle whose entry workflow "
        "can reach a spawn: task waits in PENDING_APPROVAL until `pyoco-client approve RUN_ID` "
        "(unless the server runs with PYOCO_SPAWN_REQUIRES_APPROVAL=false).",
    )
    submit_bundle.add_argument("bundle_file", metavar="FILE", help="the bundle YAML file")
    submit_bundle.add_argument(
        "--tag", help="queue tag of the entry run and, by default, its children"
    )
    _add_wait(submit_bundle)
    submit_bundle.set_defaults(handler=cmd_submit_bundle)

    approve = commands.add_parser(
        "approve", help="approve a PENDING_APPROVAL run: it is queued (repeating is harmless)"
    )
    approve.add_argument("run_id", metavar="RUN_ID")
    _add_wait(approve)
    approve.set_defaults(handler=cmd_approve)

    reject = commands.add_parser(
        "reject", help="reject a PENDING_APPROVAL run: it ends CANCELLED without running"
    )
    reject.add_argument("run_id", metavar="RUN_ID")
    reject.add_argument("--reason", help="why, recorded in the run's error and approval")
    reject.set_defaults(handler=cmd_reject)

    get = commands.add_parser("get", help="a run's snapshot")
    get.add_argument("run_id")
    get.add_argument("--records", action="store_true", help="include task records")
    get.set_defaults(handler=cmd_get)

    tasks = commands.add_parser("tasks", help="a run's tasks and task records")
    tasks.add_argument("run_id")
    tasks.set_defaults(handler=cmd_tasks)

    listing = commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--flow")
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--full", action="store_true", help="full snapshots")
    listing.add_argument("--output", choices=("json", "table"), default="json")
    listing.set_defaults(handler=cmd_list)

    watch = commands.add_parser("watch", help="follow a run live (JSON lines)")
    watch.add_argument("run_id")
    watch.add_argument(
        "--until-terminal",
        action="store_true",
        help="exit when the run ends: 0 if COMPLETED, 1 otherwise",
    )
    watch.add_argument("--output", choices=("json", "status"), default="json")
    watch.add_argument(
        "--timeout-sec",
        "--timeout",
        dest="timeout",
        type=float,
        metavar="SEC",
        help="stop following after SEC seconds (exit 0; 1 with --until-terminal)",
    )
    watch.add_argument("--records", action="store_true", help="snapshots with task records")
    watch.add_argument(
        "--since",
        type=_finite_number,
        metavar="ID|TIME",
        help="resume: a whole number below 10^9 is an event id (the SSE id, a KV revision): "
        "only later snapshots; otherwise a Unix time: only snapshots updated at or after it",
    )
    watch.add_argument(
        "--max-events",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="exit 0 after printing N snapshots [0: no limit]",
    )
    watch.set_defaults(handler=cmd_watch)

    cancel = commands.add_parser("cancel", help="cancel a run")
    cancel.add_argument("--run-id", required=True)
    cancel.add_argument("--wait", action="store_true", help="wait until the run is terminal")
    cancel.add_argument(
        "--timeout-sec",
        "--timeout",
        dest="timeout",
        type=float,
        default=30.0,
        metavar="SEC",
        help="with --wait: give up after SEC seconds, exit 1 [30]",
    )
    cancel.set_defaults(handler=cmd_cancel)

    add_list_vnext_command(commands)
    add_workers_command(commands)
    add_dlq_commands(commands)
    add_schedule_commands(commands)
    add_plugin_registry_commands(commands)

    metrics = commands.add_parser("metrics", help="the gateway's Prometheus metrics")
    metrics.set_defaults(handler=cmd_metrics)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    client = PyocoHttpClient(
        args.server,
        api_key=args.api_key,
        timeout=args.request_timeout,
        api_key_header=args.api_key_header,
    )
    try:
        return args.handler(client, args)
    except UsageError as exc:
        print(f"pyoco-client: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PyocoHttpError as exc:
        print(f"error: {_http_error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (PyocoConnectionError, WaitTimeout, PyocoClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()


#: Hints for error IDs whose status alone says too little.
ERROR_HINTS = {
    "ERR-PYOCO-0020": "this gateway does not offer that endpoint; is it an older version?",
    "ERR-PYOCO-0028": "list the entries with `pyoco-client dlq list`",
    "ERR-PYOCO-0029": "see the reason; `pyoco-client get RUN_ID` shows the run",
    "ERR-PYOCO-0040": "use an API key with the operator role (api-key create --role operator)",
    "ERR-PYOCO-0041": "bump the version; to go back, delete the newer wheel or pin",
    "ERR-PYOCO-0043": "see the stored wheels with `pyoco-client plugins list`",
}
HINTS = {
    401: "pass --api-key or set PYOCO_API_KEY",
    403: "the API key is unknown or revoked; ask an operator for a new one",
    404: "check the run id (runs of other tenants are not visible)",
    413: "the request or workflow file is too large",
    422: "fix the request as the detail says",
    503: "the server cannot reach NATS right now; retry shortly",
}


def _http_error_line(exc: PyocoHttpError) -> str:
    extra = ""
    reason = exc.body.get("reason")
    if reason:
        extra = (
            f" [reason: {reason}"
            + (f", key: {exc.body.get('key')}" if exc.body.get("key") else "")
            + "]"
        )
    hint = ERROR_HINTS.get(exc.err_id or "") or HINTS.get(exc.status)
    status = f"HTTP {exc.status}" + (f" {exc.err_id}" if exc.err_id else "")
    return f"{status}: {exc.detail}{extra}" + (f" — {hint}" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
