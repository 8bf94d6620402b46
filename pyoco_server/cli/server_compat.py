"""``pyoco-server`` command lines of pyoco-server 0.5, accepted and mapped onto ``up``.

* The flat form (``pyoco-server --port 8000``, or no arguments at all) runs ``up``.
* ``up --log-level``, ``--nats-listen-host``, ``--nats-client-port``, ``--nats-http-port``,
  ``--with-nats-bootstrap`` keep their 0.5 meaning for the embedded nats-server (which replaces
  the external ``nats-bootstrap`` tool); ``--worker-id`` and ``--worker-poll-timeout`` configure
  the ``--with-worker`` worker.

Where the meaning differs a little, one ``note:`` line on stderr says how the flag was mapped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..config import LOG_LEVELS

#: What ``pyoco-server`` accepts before a sub-command without it being the flat 0.5 form.
TOP_LEVEL_FLAGS = frozenset({"-h", "--help", "--version"})
#: uvicorn's log levels that ours do not have, and what they map to.
LOG_LEVEL_ALIASES = {"TRACE": "DEBUG"}
DEFAULT_NATS_HOST = "127.0.0.1"


def note(text: str) -> None:
    """One line on stderr saying how a 0.5 command line was mapped."""
    print(f"note: {text}", file=sys.stderr)


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Rewrite the flat 0.5 form (options without a sub-command, or nothing) to ``up ...``."""
    args = list(argv)
    if not args:
        note("`pyoco-server` without a command runs `pyoco-server up`")
        return ["up"]
    if args[0].startswith("-") and args[0] not in TOP_LEVEL_FLAGS:
        note(f"`pyoco-server {' '.join(args)}` is the 0.5 form; running `pyoco-server up ...`")
        return ["up", *args]
    return args


def _log_level(text: str) -> str:
    level = text.strip().upper()
    level = LOG_LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        choices = ", ".join(level.lower() for level in LOG_LEVELS)
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {choices}")
    return level


def add_compat_up_arguments(up: argparse.ArgumentParser) -> None:
    """The 0.5 flags of ``up`` (the client port is ``--nats-port``'s other name)."""
    up.add_argument(
        "--log-level",
        type=_log_level,
        metavar="LEVEL",
        help="debug, info, warning, error or critical (trace means debug); case does not "
        "matter [PYOCO_LOG_LEVEL, INFO]",
    )
    up.add_argument(
        "--nats-listen-host",
        default=DEFAULT_NATS_HOST,
        metavar="HOST",
        help=f"address the embedded nats-server listens on [{DEFAULT_NATS_HOST}]",
    )
    up.add_argument(
        "--nats-http-port",
        type=int,
        metavar="PORT",
        help="monitoring (HTTP) port of the embedded nats-server [a free port]",
    )
    up.add_argument(
        "--with-nats-bootstrap",
        action="store_true",
        help="start the embedded nats-server at --nats-listen-host:--nats-client-port even "
        "when PYOCO_NATS_URL is set (the default without it); an error with a different "
        "--nats-url",
    )
    up.add_argument("--worker-id", metavar="ID", help="--worker-id of the --with-worker worker")
    up.add_argument(
        "--worker-poll-timeout",
        type=float,
        metavar="SEC",
        help="--poll-timeout of the --with-worker worker [1.0]",
    )


def check_compat_up_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse contradictions (exit 2) and note flags that change nothing."""
    if args.with_nats_bootstrap:
        embedded = f"nats://{args.nats_listen_host}:{args.nats_port}"
        if args.nats_url and args.nats_url.strip().rstrip("/") != embedded:
            parser.error(
                f"--with-nats-bootstrap starts NATS at {embedded}, but --nats-url is "
                f"{args.nats_url!r}: drop one of them (or make --nats-url {embedded})"
            )
        note(
            "--with-nats-bootstrap: the embedded nats-server is started "
            f"at {embedded} (nats-bootstrap is not needed)"
        )
    if not args.with_worker:
        for flag, value in (
            ("--worker-id", args.worker_id),
            ("--worker-poll-timeout", args.worker_poll_timeout),
        ):
            if value is not None:
                note(f"{flag} has no effect without --with-worker")
