"""This directory is its own test root (``pytest.ini`` here), run by ``tox -e contract`` only.

The full suite (``pytest tests`` from the repository root) passes by it: its
cases assert that Flask and the database drivers are *absent*, and its
runtime plugin is installed only in that environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Ignore everything here unless pytest runs with this directory as its root."""
    return True if config.rootpath.resolve() != HERE else None
