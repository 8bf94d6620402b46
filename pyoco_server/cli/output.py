"""What every ``pyoco-client`` command shares: JSON documents, tables for people, and the
usage error."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class UsageError(Exception):
    """Bad command-line input found after argparse (exit 2)."""


def print_json(document: Any, out: TextIO | None = None) -> None:
    """One JSON document on a line of ``out`` (default: the current stdout)."""
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
    out.write(json.dumps(document, ensure_ascii=False) + "\n")
    out.flush()


def print_table(rows: list[dict[str, Any]], columns: list[str], out: TextIO | None = None) -> None:
    """``rows`` as aligned columns with upper-case headers (``-`` for missing values)."""
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
