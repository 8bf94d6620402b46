"""Submit runs with the Python client library and follow them to the end.

    python examples/submit.py                      # the `hello` flow, then examples/hello.yaml
    python examples/submit.py --flow sum --param n=100
    python examples/submit.py --server http://gateway:8000 --api-key pyoco_... --no-yaml

Needs a running system, e.g. `scripts/up` (gateway + worker serving examples/hello_flows.py).
Prints one line per run and exits 1 if a run did not complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pyoco_server.client import PyocoHttpClient, PyocoHttpError

HERE = Path(__file__).resolve().parent


def follow(client: PyocoHttpClient, run_id: str, timeout: float) -> dict[str, Any]:
    """Follow the run to its end (live through /watch), printing each status change."""
    last: dict[str, Any] = {}
    for snapshot in client.snapshots(run_id, timeout=timeout):
        if snapshot["status"] != last.get("status"):
            print(f"  {run_id}  {snapshot['status']}", file=sys.stderr)
        last = snapshot
    return client.get_run(run_id, include=["records"])  # with the tasks' outputs


def outputs(snapshot: dict[str, Any]) -> dict[str, Any]:
    records = snapshot.get("task_records") or {}
    return {name: record.get("output") for name, record in records.items()}


def parse_param(text: str) -> tuple[str, Any]:
    key, _, raw = text.partition("=")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("PYOCO_SERVER", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("PYOCO_API_KEY"))
    parser.add_argument("--flow", default="hello", help="flow name [hello]")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-yaml", action="store_true", help="skip the examples/hello.yaml run")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    failed = 0
    with PyocoHttpClient(args.server, api_key=args.api_key) as client:
        try:
            runs = [client.submit_run(args.flow, dict(map(parse_param, args.param)))]
            if not args.no_yaml:
                runs.append(client.submit_run_yaml(HERE / "hello.yaml", "hello-yaml"))
        except PyocoHttpError as error:
            print(f"rejected: {error} {error.body.get('reason') or ''}", file=sys.stderr)
            return 1
        for submitted in runs:
            final = follow(client, submitted["run_id"], args.timeout)
            print(
                json.dumps(
                    {
                        "run_id": final["run_id"],
                        "flow_name": final["flow_name"],
                        "status": final["status"],
                        "outputs": outputs(final),
                        "error": final.get("error"),
                    }
                )
            )
            failed += final["status"] != "COMPLETED"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
