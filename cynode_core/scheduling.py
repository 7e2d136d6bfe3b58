"""The built-in ``least-loaded`` scheduler plugin."""

from __future__ import annotations

from collections.abc import Sequence

from cynode_core import hookimpl
from cynode_core.hookspecs import JobInfo, NodeCandidate

PLUGIN_NAME = "least-loaded"


class LeastLoaded:
    """Pick the node with the most free slots; ties go to the first by slug."""

    @hookimpl(trylast=True)
    def cynode_select_node(self, job: JobInfo, candidates: Sequence[NodeCandidate]) -> NodeCandidate | None:
        free = [c for c in candidates if c.free_slots > 0]
        if not free:
            return None
        return max(free, key=lambda c: (c.free_slots, -candidates.index(c)))
