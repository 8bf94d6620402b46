"""docs/error-ids.md lists every error ID of pyoco_server/errors.py with its meaning, and no
other."""

from __future__ import annotations

import re
from pathlib import Path

from pyoco_server.errors import ERROR_MESSAGES


def test_every_error_id_is_documented_with_its_meaning(repo_root: Path):
    text = (repo_root / "docs" / "error-ids.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| ERR-PYOCO-(\d{4}) \| ([^|]+?) \|", text, flags=re.MULTILINE))
    assert {int(number): meaning for number, meaning in rows.items()} == ERROR_MESSAGES
