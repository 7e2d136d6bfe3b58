"""The allowlist ``docs/trace_exceptions.txt``: Phase 1 requirements excused from the gate, with reasons.

One ``REQ-ID reason`` per line; blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .requirements import REQ_ID


@dataclass
class AllowlistEntry:
    req_id: str
    reason: str
    line: int


def load_allowlist(path: Path) -> tuple[dict[str, AllowlistEntry], list[str]]:
    """The entries by requirement ID, and the problems of malformed lines; no file is an empty list."""
    entries: dict[str, AllowlistEntry] = {}
    problems: list[str] = []
    if not path.is_file():
        return entries, problems
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        req_id, _, reason = line.partition(" ")
        reason = reason.strip()
        if not REQ_ID.fullmatch(req_id):
            problems.append(f"{path.name} line {number}: {req_id!r} is not a requirement ID")
            continue
        if not reason:
            problems.append(f"{path.name} line {number}: {req_id} has no reason")
        if req_id in entries:
            problems.append(f"{path.name} line {number}: {req_id} is listed twice")
        entries[req_id] = AllowlistEntry(req_id, reason, number)
    return entries, problems
