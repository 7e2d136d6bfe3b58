"""Docs that must say what the code does."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cynode_core.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_tables_match_the_settings() -> None:
    generated = CliRunner().invoke(main, ["config", "--markdown"]).output.strip()
    assert generated, "cynode config --markdown printed nothing"
    readme = (ROOT / "README.md").read_text()
    assert generated in readme, "README's configuration tables are stale: paste `cynode config --markdown` into README"


def test_readme_names_the_two_quick_start_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "./scripts/bootstrap && .venv/bin/cynode demo" in readme
    assert "./scripts/bootstrap && .venv/bin/tox" in readme
