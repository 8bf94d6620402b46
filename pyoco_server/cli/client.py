"""``pyoco-client``: the command-line client."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyoco-client", description="the command-line client (not implemented yet)."
    )
    parser.parse_args(argv)
    print("pyoco-client: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
