"""``pyoco-worker``: the worker host."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from typing import Any

from .. import __version__
from ..config import Settings, env_var, validate_tag
from ..errors import ConfigError
from ..hook_trace import TRACE_LOGGER, enable_tracing
from ..log import configure_logging, get_logger, structlog
from ..plugins import build_plugin_manager
from ..worker.host import (
    PluginSelection,
    WorkerHost,
    WorkerOptions,
    default_worker_id,
    validate_worker_id,
)
from ..worker.lifeline import die_with_parent
from ..worker.plugin_sync.options import PluginSyncOptions, sync_root
from .common import (
    add_nats_argument,
    add_plugin_arguments,
    load_settings,
    make_plugin_manager,
    plugin_selection,
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
    add_plugin_sync_arguments(parser)
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    return parser


def add_plugin_sync_arguments(parser: argparse.ArgumentParser) -> None:
    """``--plugin-sync`` and its options (0.5.1's ``--wheel-sync*`` spellings accepted)."""
    parser.add_argument(
        "--plugin-sync",
        "--wheel-sync",
        dest="plugin_sync",
        action="store_true",
        default=None,
        help="follow the plugin registry: install signed wheels published for this worker's "
        "tags and switch execution processes to them between runs, without a restart "
        f"[{env_var('plugin_sync')}, false]",
    )
    parser.add_argument(
        "--no-plugin-sync",
        "--no-wheel-sync",
        dest="plugin_sync",
        action="store_false",
        help="do not follow the plugin registry (overrides the environment)",
    )
    parser.add_argument(
        "--plugin-sync-dir",
        "--wheel-sync-dir",
        metavar="DIR",
        help="where synced wheels are unpacked, one versioned directory each, under "
        f"DIR/<worker-id> [{env_var('plugin_sync_dir')}, .pyoco/plugins]",
    )
    parser.add_argument(
        "--trusted-keys",
        metavar="KEY_OR_FILE[,...]",
        help="public keys (ed25519:...) or files of them whose signatures this worker "
        f"accepts; --plugin-sync needs at least one [{env_var('plugin_trusted_keys')}]",
    )
    for legacy in ("--wheel-sync-interval-sec", "--wheel-install-timeout-sec"):
        parser.add_argument(
            legacy,
            type=float,
            metavar="SEC",
            help="(0.5.1) accepted and ignored: the sync follows a watch, it does not poll",
        )


def _tags(raw: str | None, default: str) -> list[str]:
    tags = [tag.strip() for tag in (raw or "").split(",") if tag.strip()] or [default]
    return list(dict.fromkeys(validate_tag(tag, "--tags") for tag in tags))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(
        {
            "nats_url": args.nats_url,
            "worker_concurrency": args.concurrency,
            "worker_grace_period_sec": args.grace_period,
            "plugin_sync": args.plugin_sync,
            "plugin_sync_dir": args.plugin_sync_dir,
            "plugin_trusted_keys": _split(args.trusted_keys),
        },
        {
            "nats_url": "--nats-url",
            "worker_concurrency": "--concurrency",
            "worker_grace_period_sec": "--grace-period",
            "plugin_sync": "--plugin-sync",
            "plugin_sync_dir": "--plugin-sync-dir",
            "plugin_trusted_keys": "--trusted-keys",
        },
    )
    if args.exit_with_parent:
        import signal

        die_with_parent(signal.SIGTERM)
    worker_id = validate_worker_id(args.worker_id) if args.worker_id else default_worker_id()
    sync = _plugin_sync_options(settings, args.trusted_keys is not None)
    options = WorkerOptions(
        tags=_tags(args.tags, settings.default_tag),
        worker_id=worker_id,
        concurrency=settings.worker_concurrency,
        grace_period_sec=settings.worker_grace_period_sec,
        flow_resolver=args.flow_resolver,
        plugins=PluginSelection(*plugin_selection(args, settings)),
        run_once=args.run_once,
        poll_timeout_sec=max(0.05, args.poll_timeout),
        work_dir=args.work_dir,
        plugin_sync=sync,
    )
    configure_logging(settings, "pyoco-server:worker")
    structlog.contextvars.bind_contextvars(worker_id=options.worker_id)
    pm = (
        make_plugin_manager(args, settings)
        if sync is None
        else _synced_host_plugins(options, settings)
    )
    # asyncio's own loop, not uvloop: side by side uvloop drained ~3 % more runs/s (within
    # noise) for ~1.9 MiB more host memory (docs/worker.md, "Memory").
    return asyncio.run(WorkerHost(settings, options, pm).run())


def _synced_host_plugins(options: WorkerOptions, settings: Settings) -> Any:
    """The host's own plugin manager with --plugin-sync: its hooks (snapshots, dispositions)
    see the synced set verified last time (the manifest); execution processes follow every
    later change between runs. Names no synced wheel provides yet are skipped for now."""
    from ..plugin_registry.signing import TrustedKeys
    from ..worker.plugin_sync.plugin_set import PluginSet, activate, select_available

    assert options.plugin_sync is not None
    trusted = TrustedKeys.load(options.plugin_sync.trusted_keys, options.plugin_sync.trusted_source)
    root = sync_root(options.plugin_sync.directory, options.worker_id)
    activate(PluginSet.load(root, set(trusted.keys)).paths)
    selection = options.plugins
    pm = build_plugin_manager(
        plugins=select_available(selection.allow),
        disable=selection.disable,
        also=select_available(selection.also) or (),
    )
    if settings.trace_plugins:
        enable_tracing(pm, get_logger(TRACE_LOGGER))
    return pm


def _split(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _plugin_sync_options(settings: Settings, from_flag: bool) -> PluginSyncOptions | None:
    if not settings.plugin_sync:
        return None
    source = "--trusted-keys" if from_flag else "PYOCO_PLUGIN_TRUSTED_KEYS"
    if not settings.plugin_trusted_keys:
        raise ConfigError(
            source,
            "",
            "at least one trusted public key (ed25519:... or a file of them) for --plugin-sync; "
            "make one with: pyoco-server-admin plugin-key create --out FILE",
        )
    return PluginSyncOptions(settings.plugin_sync_dir, settings.plugin_trusted_keys, source)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
