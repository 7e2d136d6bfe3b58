"""``python -m cynode_core`` and the ``cynode`` console script."""

from __future__ import annotations

import sys


def run() -> None:
    """Run the ``cynode`` command, or say which extra is missing in a contract-only install."""
    try:
        from cynode_core.cli import main
    except ImportError as exc:
        sys.stderr.write(
            f"cynode: this installation has the plugin contract only ({exc.name} is missing);\n"
            "install the processes with: pip install 'cynode[all]'\n"
        )
        sys.exit(2)
    main()


if __name__ == "__main__":
    run()
