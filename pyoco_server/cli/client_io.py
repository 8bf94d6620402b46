"""What the ``pyoco-client`` commands share: params from flags, JSON and table output, usage
errors."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml


class UsageError(Exception):
    """Bad command-line input found after argparse (exit 2)."""


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` → ``(k, v)`` with ``v`` JSON-decoded when it parses (``n=3`` gives 3)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--param {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def collect_params(args: argparse.Namespace) -> dict[str, Any]:
    """Merge ``--params-file``, ``--params`` and ``--param`` (later ones win)."""
    params: dict[str, Any] = {}
    if args.params_file:
        path = Path(args.params_file)
        try:
            loaded = (
                yaml.safe_load(path.read_text())
                if path.suffix in (".yaml", ".yml")
                else (json.loads(path.read_text()))
            )
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise UsageError(f"--params-file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--params-file {path}: must hold an object")
        params.update(loaded)
    if args.params:
        try:
            loaded = json.loads(args.params)
        except ValueError as exc:
            raise UsageError(f"--params: not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--params: must be a JSON object")
        params.update(loaded)
    for item in args.param:
        key, value = parse_param(item)
        params[key] = value
    return params


def print_json(document: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
    out.write(json.dumps(document, ensure_ascii=False) + "\n")
    out.flush()


def print_table(rows: list[dict[str, Any]], columns: list[str], out: TextIO | None = None):
    out = out or sys.stdout
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    header = [column.upper() for column in columns]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(columns))]
    for line in [header, *cells]:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
