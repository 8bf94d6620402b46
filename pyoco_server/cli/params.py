"""A run's params from ``pyoco-client``'s flags (``--params-file``, ``--params``, ``--param``),
for every command that creates runs (``run``, ``schedule create``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from .output import UsageError


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
