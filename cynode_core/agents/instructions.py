"""The instruction bundles of the agents: Markdown files read in name order (agents_contract.md 4.9).

The bundles ship as package data under ``cynode_core/agents/instructions/<role>/``;
``CYNODE_AGENT_INSTRUCTIONS_DIR`` (the ``root`` given here) replaces that root.
Only the ``project_manager`` role exists now.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGED = Path(__file__).parent / "instructions"
PROJECT_MANAGER = "project_manager"


def bundle_dir(role: str, root: Path | None = None) -> Path:
    """Where ``role``'s bundle is read from."""
    return (root or PACKAGED) / role


def load_bundle(role: str, root: Path | None = None) -> str:
    """The bundle's files, in name order, joined by a blank line; ``FileNotFoundError`` when it has none."""
    where = bundle_dir(role, root)
    files = sorted(where.glob("*.md"))
    if not files:
        raise FileNotFoundError(f"no instruction files (*.md) in {where}")
    return "\n\n".join(path.read_text(encoding="utf-8").strip() for path in files)
