"""``python -m cynode_example_auth hash HANDLE [EMAIL]``: print a users file entry.

The password is read without echo from the terminal, or as one line from
standard input when it is not a terminal (for scripts).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from cynode_example_auth.directory import hash_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cynode_example_auth")
    commands = parser.add_subparsers(dest="command", required=True)
    entry = commands.add_parser("hash", help="print 'handle hash [email]' for a users file")
    entry.add_argument("handle")
    entry.add_argument("email", nargs="?")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.handle}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        parser.error("empty password")
    print(" ".join(part for part in (args.handle, hash_password(password), args.email) if part))
    return 0


if __name__ == "__main__":
    sys.exit(main())
