"""The reference docs stay complete: every setting, every flag, every hook is documented."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

from pyoco_server import hookspecs
from pyoco_server.cli import admin, client, server, worker
from pyoco_server.config import Settings, env_var

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
PARSERS = {
    "pyoco-server": server.build_parser,
    "pyoco-worker": worker.build_parser,
    "pyoco-client": client.build_parser,
    "pyoco-server-admin": admin.build_parser,
}
UNDOCUMENTED = {"-h", "--help", "--version"}


def test_every_setting_has_a_row_in_configuration_md():
    for spec in dataclasses.fields(Settings):
        name = env_var(spec.name)
        assert f"| `{name}` |" in CONFIGURATION, f"{name} ({spec.name}) missing in configuration.md"
    for name in ("PYOCO_SERVER", "PYOCO_API_KEY", "PYOCO_NATS_SERVER_BIN"):
        assert f"| `{name}` |" in CONFIGURATION, name


def commands(path: str, parser: argparse.ArgumentParser) -> Iterator[tuple[str, list[str]]]:
    """``(command path, documented option strings)`` for a parser and its sub-commands."""
    options: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(f"{path} {name}", sub)
        elif action.option_strings and action.help != argparse.SUPPRESS:
            long = [o for o in action.option_strings if o.startswith("--")]
            options += [o for o in (long or action.option_strings) if o not in UNDOCUMENTED]
    yield path, options


def section(command: str) -> str | None:
    match = re.search(
        rf"^### `{re.escape(command)}`\n(.*?)(?=^#)", CONFIGURATION + "\n#", re.M | re.S
    )
    return match.group(1) if match else None


def test_every_command_line_flag_is_in_its_commands_section():
    for program, build in PARSERS.items():
        for command, options in commands(program, build()):
            if command in PARSERS and not options:
                continue  # only sub-commands (pyoco-server)
            if command == "pyoco-server-admin api-key":
                continue  # only actions
            text = section(command)
            assert text is not None, f"configuration.md has no section '### `{command}`'"
            for option in options:
                assert f"| `{option}` |" in text, f"{command} {option} missing in configuration.md"


def test_architecture_md_says_where_every_hook_is_called():
    architecture = (DOCS / "architecture.md").read_text()
    for name, obj in vars(hookspecs).items():
        if name.startswith("pyoco_") and inspect.isfunction(obj):
            assert f"| `{name}` |" in architecture, f"{name} missing in architecture.md's table"


def test_the_docs_link_each_other():
    readme = (DOCS.parent / "README.md").read_text()
    for page in ("quickstart", "plugins", "configuration", "architecture", "scaling"):
        assert f"docs/{page}.md" in readme, f"README.md does not link docs/{page}.md"
