"""Per-job workspaces: the host directory a job sees at ``/workspace`` (docs/wire_contract.md#sandbox).

Each job gets ``<root>/<job_id>``, made fresh before the run and deleted
after it unless ``CYNODE_KEEP_WORKSPACES`` is set. The root is 0700 and
the agent's own, so no other host user reaches a workspace.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from node_agent.sandbox_spec import SANDBOX_GID, SANDBOX_UID


class Workspaces:
    """The workspaces under one root directory."""

    def __init__(self, root: Path, *, keep: bool = False) -> None:
        self.root = root
        self._keep = keep

    def create(self, key: str) -> Path:
        """A new, empty workspace for job ``key`` that the sandbox user can write; ``OSError`` if not."""
        path = self.root / key
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            # Left by a crash: start clean rather than hand a job someone else's files.
            shutil.rmtree(path)
        path.mkdir(mode=0o700)
        if os.geteuid() == 0:
            # The sandbox runs as 65534:65534; 0700 keeps everyone else out.
            os.chown(path, SANDBOX_UID, SANDBOX_GID)
        else:
            # Rootless: the sandbox's 65534 is a subordinate uid we cannot chown
            # to. The root is 0700 and ours, so no other host user can reach
            # this directory; each sandbox mounts only its own.
            path.chmod(0o777)
        return path

    def release(self, path: Path) -> None:
        """The job ended: delete its workspace, unless workspaces are kept."""
        if not self._keep:
            shutil.rmtree(path, ignore_errors=True)

    def discard(self, key: str) -> None:
        """Delete what a crashed agent left of job ``key``'s workspace (kept or not: the job is over)."""
        shutil.rmtree(self.root / key, ignore_errors=True)
