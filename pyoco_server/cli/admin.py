"""``pyoco-server-admin``: API key administration."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyoco-server-admin", description="API key administration (not implemented yet)."
    )
    parser.parse_args(argv)
    print("pyoco-server-admin: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
