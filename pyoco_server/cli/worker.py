"""``pyoco-worker``: the worker host."""

from __future__ import annotations

import argparse
import sys
import textwrap

import structlog

from .. import __version__
from ..config import env_var, validate_tag
from ..log import configure_logging
from ..worker.host import (
    PluginSelection,
    WorkerHost,
    WorkerOptions,
    default_worker_id,
    validate_worker_id,
)
from ..worker.lifeline import die_with_parent
from .common import (
    add_nats_argument,
    add_plugin_arguments,
    load_settings,
    make_plugin_manager,
    plugin_selection,
    run_async,
    run_command,
)

EPILOG = textwrap.dedent(
    """\
    examples:
      pyoco-worker --flow-resolver examples/hello_flows.py:resolve
      pyoco-worker --tags gpu,default --concurrency 4 --flow-resolver my_team.flows:resolve

    Jobs are taken from the tags in turn (round robin), the moment they are published, and
    never more than there are free execution slots. Each running flow gets its own
    execution process and a fresh working directory (removed when the run ends). SIGTERM
    or SIGINT (Ctrl-C) stops pulling, lets running flows finish within the grace period,
    hands the rest back to the queue, marks the worker STOPPED and exits 0; a second
    signal skips the rest of the grace period. Configuration: PYOCO_* environment
    variables (docs/configuration.md); flags override them.
    """
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyoco-worker",
        description="Run a worker host: pull jobs for the given tags from NATS JetStream,\n"
        "execute their pyoco flows and keep each run's snapshot current until it ends.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pyoco-worker {__version__}")
    add_nats_argument(parser)
    parser.add_argument(
        "--tags",
        metavar="TAG[,TAG...]",
        help="tags to pull jobs for; a job is taken from any of them [PYOCO_DEFAULT_TAG]",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="this worker's name in /workers and in run snapshots [<hostname>-<pid>]",
    )
    parser.add_argument(
        "--flow-resolver",
        metavar="SPEC",
        help="module:func or path/to/file.py:func returning the pyoco Flow for a flow name "
        "(func(flow_name) or func(flow_name, job)); YAML runs need none",
    )
    add_plugin_arguments(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"flows run at once, each in its own process [{env_var('worker_concurrency')}, 1]",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        metavar="SEC",
        help="on SIGTERM/SIGINT, how long running flows may finish before they are stopped "
        f"and their jobs requeued [{env_var('worker_grace_period_sec')}, 30]",
    )
    parser.add_argument(
        "--run-once",
        action="store_true",
        help="take at most one job (waiting up to --poll-timeout), run it, then exit",
    )
    parser.add_argument(
        "--poll-timeout",
        type=float,
        default=1.0,
        metavar="SEC",
        help="how often an idle host checks every tag for jobs that arrive without a publish "
        "(NAK delays, AckWait expiry, reconnects); new jobs are picked up at once [1.0]",
    )
    parser.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where runs get their working directories [a temporary directory]",
    )
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    return parser


def _tags(raw: str | None, default: str) -> list[str]:
    tags = [tag.strip() for tag in (raw or "").split(",") if tag.strip()] or [default]
    return list(dict.fromkeys(validate_tag(tag, "--tags") for tag in tags))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(
        {
            "nats_url": args.nats_url,
            "worker_concurrency": args.concurrency,
            "worker_grace_period_sec": args.grace_period,
        },
        {
            "nats_url": "--nats-url",
            "worker_concurrency": "--concurrency",
            "worker_grace_period_sec": "--grace-period",
        },
    )
    if args.exit_with_parent:
        import signal

        die_with_parent(signal.SIGTERM)
    options = WorkerOptions(
        tags=_tags(args.tags, settings.default_tag),
        worker_id=validate_worker_id(args.worker_id) if args.worker_id else default_worker_id(),
        concurrency=settings.worker_concurrency,
        grace_period_sec=settings.worker_grace_period_sec,
        flow_resolver=args.flow_resolver,
        plugins=PluginSelection(*plugin_selection(args, settings)),
        run_once=args.run_once,
        poll_timeout_sec=max(0.05, args.poll_timeout),
        work_dir=args.work_dir,
    )
    configure_logging(settings, "pyoco-server:worker")
    structlog.contextvars.bind_contextvars(worker_id=options.worker_id)
    pm = make_plugin_manager(args, settings)
    return run_async(WorkerHost(settings, options, pm).run())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
