"""``pyoco-server``: run the gateway (``up``) and list plugins (``plugins``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import DASHBOARD_LANGS
from ..log import configure_logging, get_logger
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_nats_argument,
    add_plugin_arguments,
    load_settings,
    make_plugin_manager,
    run_command,
)
from .server_compat import add_compat_up_arguments, check_compat_up_arguments, normalize_argv

DEFAULT_STORE_DIR = ".pyoco/nats"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyoco-server",
        description="pyoco-server: submit pyoco flows over HTTP, run them on workers, "
        "watch them to the end. Configuration comes from PYOCO_* environment variables "
        "(docs/configuration.md); flags override them.",
    )
    parser.add_argument("--version", action="version", version=f"pyoco-server {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run the HTTP gateway",
        description="Run the HTTP gateway (Falcon on uvicorn). Without --nats-url and "
        "PYOCO_NATS_URL it starts an embedded nats-server with JetStream, storing data under "
        f"./{DEFAULT_STORE_DIR} so runs survive a restart, and stops it on exit. "
        "SIGTERM/SIGINT shut down gracefully.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    up.add_argument("--port", type=int, default=8000, help="HTTP port [8000]")
    add_nats_argument(up)
    up.add_argument(
        "--nats-port",
        "--nats-client-port",
        type=int,
        default=4222,
        help="client port of the embedded nats-server; 0 picks a free port [4222]",
    )
    up.add_argument(
        "--store-dir",
        default=DEFAULT_STORE_DIR,
        help=f"data directory of the embedded nats-server [./{DEFAULT_STORE_DIR}]",
    )
    add_plugin_arguments(up)
    up.add_argument(
        "--with-worker",
        action="store_true",
        help="also run a worker (a child process, restarted if it dies, stopped on exit)",
    )
    up.add_argument("--worker-tags", metavar="TAG[,TAG...]", help="tags of that worker")
    up.add_argument(
        "--worker-flow-resolver",
        metavar="SPEC",
        help="--flow-resolver of that worker (module:func or path/file.py:func)",
    )
    up.add_argument(
        "--allow-plugin-publish-without-auth",
        action="store_true",
        default=None,
        help="with PYOCO_HTTP_AUTH_MODE=none, accept plugin wheel uploads, deletes and pins "
        "from anyone who can reach the gateway: for a developer's own machine only "
        "[PYOCO_PLUGIN_PUBLISH_WITHOUT_AUTH, false]",
    )
    add_compat_up_arguments(up)

    up.add_argument(
        "--dashboard-lang",
        choices=DASHBOARD_LANGS,
        help="language of the dashboard at / : auto follows the browser, ja or en "
        "[PYOCO_DASHBOARD_LANG or auto]",
    )

    plugins = commands.add_parser(
        "plugins",
        help="list the plugins that would load",
        description="List the plugins that would load with these flags and environment: "
        "name, distribution and version, hooks implemented, and where each came from.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_plugin_arguments(plugins)
    return parser


def _plugins(args: argparse.Namespace) -> int:
    settings = load_settings({})
    pm = make_plugin_manager(args, settings)
    infos = [info.as_dict() for info in pm.infos.values()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    rows = [
        (
            info["name"],
            f"{info['distribution'] or '-'} {info['version'] or ''}".strip(),
            info["source"],
            ", ".join(info["hooks"]) or "-",
        )
        for info in infos
    ]
    header = ("NAME", "DISTRIBUTION", "SOURCE", "HOOKS")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    return EXIT_OK


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler so clean-up code runs before exiting 0."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated(0)


def _up(args: argparse.Namespace) -> int:
    import uvicorn

    from ..embedded import EmbeddedNats
    from ..gateway.app import create_app
    from ..gateway.server import GRACEFUL_SHUTDOWN_SEC, GatewayServer

    settings = load_settings(
        {
            "nats_url": args.nats_url,
            "log_level": args.log_level,
            "dashboard_lang": args.dashboard_lang,
            "plugin_publish_without_auth": args.allow_plugin_publish_without_auth,
        },
        {
            "nats_url": "--nats-url",
            "log_level": "--log-level",
            "dashboard_lang": "--dashboard-lang",
            "plugin_publish_without_auth": "--allow-plugin-publish-without-auth",
        },
    )
    configure_logging(settings, "pyoco-server:http")
    log = get_logger("pyoco_server.cli.server")
    pm = make_plugin_manager(args, settings)
    embedded = None
    worker = None
    signal.signal(signal.SIGTERM, _raise_terminated)
    # Started from a script's background job, SIGINT arrives ignored (SIG_IGN is inherited):
    # uvicorn still stops on it, but restores that handler and re-raises into nothing, so the
    # exit would be 0. Ctrl-C / SIGINT always means KeyboardInterrupt -> 130 here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if settings.nats_url is None or args.with_nats_bootstrap:
            embedded = EmbeddedNats(
                Path(args.store_dir),
                host=args.nats_listen_host,
                port=args.nats_port or None,
                monitor_port=args.nats_http_port or None,
            )
            url = embedded.start()
            log.info("embedded_nats_started", url=url, pid=embedded.pid, store=args.store_dir)
            settings = settings.with_overrides(nats_url=url)
        if args.with_worker:
            from ..worker.supervisor import start_worker

            worker = start_worker(args, settings.nats_url, settings.worker_grace_period_sec)
        app = create_app(settings, pm)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SEC,
        )
        server = GatewayServer(config, app)
        log.info("gateway_starting", host=args.host, port=args.port)
        server.run()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Terminated:
        return EXIT_OK
    finally:
        if worker is not None:
            worker.stop()
        if embedded is not None:
            embedded.stop()
            log.info("embedded_nats_stopped")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(normalize_argv(sys.argv[1:] if argv is None else argv))
    if args.command == "up":
        check_compat_up_arguments(parser, args)
    handlers = {"up": _up, "plugins": _plugins}
    return run_command(lambda: handlers[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
