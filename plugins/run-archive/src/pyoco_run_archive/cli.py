"""``pyoco-run-archive``: query the archive file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

from .archive import RunArchive
from .plugin import PATH_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyoco-run-archive", description="List finished runs from a pyoco run archive."
    )
    parser.add_argument(
        "--path",
        default=os.environ.get(PATH_ENV),
        help=f"the archive file (default: ${PATH_ENV})",
    )
    parser.add_argument("--status", help="only runs that ended with this status (e.g. FAILED)")
    parser.add_argument("--flow", help="only runs of this flow")
    parser.add_argument("--tag", help="only runs routed to this tag")
    parser.add_argument("--tenant", help="only runs of this tenant")
    parser.add_argument("--run-id", help="the attempts of one run")
    parser.add_argument(
        "--since-hours", type=float, help="only runs that finished in the last N hours"
    )
    parser.add_argument("--limit", type=int, default=50, help="at most N runs (default 50)")
    parser.add_argument(
        "--json", action="store_true", help="one JSON snapshot per line instead of a table"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.path:
        print(f"error: give --path or set {PATH_ENV}", file=sys.stderr)
        return 2
    if not os.path.exists(args.path):
        print(f"error: no archive at {args.path}", file=sys.stderr)
        return 2
    since = None
    if args.since_hours is not None:
        since = datetime.now(timezone.utc).timestamp() - args.since_hours * 3600
    runs = RunArchive(args.path).query(
        since=since,
        limit=args.limit,
        status=args.status,
        flow_name=args.flow,
        tag=args.tag,
        tenant_id=args.tenant,
        run_id=args.run_id,
    )
    for run in runs:
        if args.json:
            print(json.dumps(run))
            continue
        finished = run.get("updated_at")
        when = (
            datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="seconds")
            if isinstance(finished, (int, float))
            else "-"
        )
        error = (run.get("error") or "").splitlines()[:1]
        print(
            f"{when}  {run['status']:<9}  {run['run_id']}  #{run.get('attempt') or 1}  "
            f"{run.get('flow_name')}  {error[0] if error else ''}".rstrip()
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
