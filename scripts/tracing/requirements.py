"""The requirement catalogue: every requirement ID with its phase.

It comes from the scope document's Markdown tables
(``../shared/spec/requirements_scope.md``) or, in a clone without that
document, from the checked-in snapshot ``docs/requirements_scope_ids.txt``
(one ``ID<TAB>phase<TAB>phase as written`` line per requirement).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import TraceError

REQ_ID = re.compile(r"REQ-[A-Z]{3,8}-\d{4}")
PHASE_VALUE = re.compile(r"^(1\.5|1|2|later)\b")
GATING_PHASE = "1"
REPORTED_PHASES = ("1", "1.5")

SNAPSHOT_HEADER = """\
# Every requirement tabulated in ../shared/spec/requirements_scope.md with its phase.
# scripts/trace_requirements.py reads this file when the scope document is absent.
# Regenerate with: python scripts/trace_requirements.py --snapshot
# Columns (tab-separated): requirement ID, phase (1, 1.5, 2 or later), phase as the scope document writes it.
"""


@dataclass(frozen=True)
class Requirement:
    req_id: str
    phase: str  # "1", "1.5", "2" or "later"
    label: str  # the phase cell as written, e.g. "1 (ingest) / later (updates)"

    @property
    def family(self) -> str:
        return self.req_id.split("-")[1]


@dataclass
class Scope:
    requirements: dict[str, Requirement]
    source: str  # where they came from, as the report names it
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the scope document


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row, honouring ``\\|`` escapes."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def _plain(cell: str) -> str:
    """A cell's text without emphasis, code marks and anything after a ``<br>``."""
    return re.sub(r"<br\s*/?>.*$", "", cell).replace("*", "").replace("`", "").strip()


def _is_separator(cells: list[str]) -> bool:
    return all(re.fullmatch(r":?-+:?", c) for c in cells if c)


def _count_row(columns: list[str], cells: list[str]) -> dict[str, int]:
    """One family's row of the count table: phase (or "later", "total") -> number."""
    row = {}
    for name, cell in zip(columns[1:], cells[1:], strict=False):
        if name.startswith("phase "):
            row[name[len("phase ") :]] = int(_plain(cell) or 0)
        elif name in ("later", "total"):
            row[name] = int(_plain(cell) or 0)
    return row


def _requirement_row(cells: list[str], phase_col: int) -> Requirement | None:
    """The requirement a row of a requirement table describes, if its first cell names one."""
    match = REQ_ID.search(cells[0])
    if not match:
        return None
    label = _plain(cells[phase_col])
    phase = PHASE_VALUE.match(label)
    if not phase:
        raise TraceError(f"{match.group(0)}: cannot read the phase {cells[phase_col]!r}")
    return Requirement(match.group(0), phase.group(1), label)


def parse_scope(text: str) -> tuple[dict[str, Requirement], dict[str, dict[str, int]]]:
    """Requirements from the scope document's requirement tables, and its per-family count table.

    A requirement table is one whose header has a ``REQ ID`` and a ``Phase``
    column; the count table's header starts with ``Family`` and has a
    ``Phase 1`` column; other tables (crosswalk, deviations) are ignored.
    """
    reqs: dict[str, Requirement] = {}
    counts: dict[str, dict[str, int]] = {}
    # The table being read: a requirement table (its phase column), the count
    # table (its column names), one we skip (phase_col -1) or none (both None).
    phase_col: int | None = None
    count_cols: list[str] | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            phase_col = None
            count_cols = None
            continue
        cells = _cells(line)
        if _is_separator(cells):
            continue
        if phase_col is None and count_cols is None:  # a header row
            names = [_plain(c).lower() for c in cells]
            if "req id" in names and "phase" in names:
                phase_col = names.index("phase")
            elif names[:1] == ["family"] and "phase 1" in names:
                count_cols = names
            else:
                phase_col = -1
            continue
        if count_cols is not None:
            family = _plain(cells[0])
            if re.fullmatch(r"[A-Z]{3,8}", family):
                counts[family] = _count_row(count_cols, cells)
            continue
        if phase_col is None or phase_col < 0 or len(cells) <= phase_col:
            continue
        req = _requirement_row(cells, phase_col)
        if req is None:
            continue
        old = reqs.get(req.req_id)
        if old is not None and old.phase != req.phase:
            raise TraceError(f"{req.req_id} is listed twice with different phases ({old.label!r}, {req.label!r})")
        reqs[req.req_id] = req
    if not reqs:
        raise TraceError("no requirement table found in the scope document")
    return reqs, counts


def count_mismatches(reqs: dict[str, Requirement], counts: dict[str, dict[str, int]]) -> list[str]:
    """Where the parsed tables disagree with the document's own count table."""
    problems = []
    for family, expected in sorted(counts.items()):
        mine = [r for r in reqs.values() if r.family == family]
        for phase in REPORTED_PHASES:
            want = expected.get(phase)
            got = sum(1 for r in mine if r.phase == phase)
            if want is not None and want != got:
                problems.append(f"{family} phase {phase}: the count table says {want}, the tables list {got}")
    return problems


# ---------------------------------------------------------------- the snapshot


def render_snapshot(reqs: dict[str, Requirement], source_text: str) -> str:
    digest = hashlib.sha256(source_text.encode("utf-8")).hexdigest()
    lines = [SNAPSHOT_HEADER + f"# Source sha256: {digest}\n"]
    for req in sorted(reqs.values(), key=lambda r: r.req_id):
        lines.append(f"{req.req_id}\t{req.phase}\t{req.label}\n")
    return "".join(lines)


def parse_snapshot(text: str) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not REQ_ID.fullmatch(parts[0]) or not PHASE_VALUE.fullmatch(parts[1]):
            raise TraceError(f"snapshot line {number}: expected 'REQ-ID<TAB>phase<TAB>label', got {line!r}")
        reqs[parts[0]] = Requirement(parts[0], parts[1], parts[2] if len(parts) > 2 else parts[1])
    if not reqs:
        raise TraceError("the snapshot lists no requirement")
    return reqs


# ---------------------------------------------------------------- either


def load_scope(scope_path: Path, snapshot_path: Path) -> Scope:
    """The scope document if it exists (checked against the snapshot), else the snapshot."""
    if scope_path.is_file():
        text = scope_path.read_text(encoding="utf-8")
        reqs, counts = parse_scope(text)
        scope = Scope(reqs, str(scope_path))
        scope.warnings.extend(count_mismatches(reqs, counts))
        if snapshot_path.is_file():
            if snapshot_path.read_text(encoding="utf-8") != render_snapshot(reqs, text):
                scope.warnings.append(
                    f"{snapshot_path} differs from {scope_path}: regenerate it with --snapshot and commit it"
                )
        else:
            scope.warnings.append(f"no snapshot at {snapshot_path}: create it with --snapshot and commit it")
        return scope
    if snapshot_path.is_file():
        return Scope(
            parse_snapshot(snapshot_path.read_text(encoding="utf-8")),
            f"{snapshot_path} (snapshot; {scope_path} not found)",
        )
    raise TraceError(f"neither the scope document {scope_path} nor the snapshot {snapshot_path} exists")
