#!/usr/bin/env python3
"""Requirement traceability: Phase 1 / 1.5 requirements -> scenarios -> test results.

Reads three things and joins them:

1. The requirement list with each requirement's phase, from the project's
   scope document (``<repo>/../shared/spec/requirements_scope.md``, or
   ``--scope PATH``). When that file is absent (a clone without ``shared/``
   beside it), the checked-in snapshot ``docs/requirements_scope_ids.txt`` is
   used instead; ``--snapshot`` regenerates the snapshot from the document.
2. The ``@REQ-*`` tags of every scenario in ``features/**/*.feature``
   (Scenario and Scenario Outline; Feature-, Rule- and Examples-level tags
   apply to the scenarios below them).
3. JUnit XML files written by pytest (``--junitxml``). Each scenario is
   mapped to its pytest-bdd test: the test modules' ``scenarios(...)`` /
   ``@scenario(...)`` calls say which module binds which feature file, and
   pytest-bdd names a bound scenario's test ``test_<normalised scenario
   name>`` (outline examples add a ``[...]`` parameter id).

A scenario passes when every test case recorded for it passed (skips aside),
fails when any of them failed or errored, and is "not run" when no JUnit file
holds it. A requirement is *proven* by at least one passing scenario.

Writes ``artifacts/traceability.md`` and prints a summary. The exit status is
non-zero when a Phase 1 requirement

- has scenarios and none of them passes while one fails (a failing proof;
  the allowlist does not excuse it),
- is proven by no scenario and is not listed in ``docs/trace_exceptions.txt``
  (the checked-in allowlist: one ``REQ-ID reason`` per line), or
- is listed in the allowlist although a scenario proves it (so the list
  only shrinks),

and when the allowlist names an ID that is not a Phase 1 requirement.

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import datetime as dt
import glob
import hashlib
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Exit statuses.
OK = 0
GATE_FAILED = 1
USAGE = 2

REQ_ID = re.compile(r"REQ-[A-Z]{3,8}-\d{4}")
# Tags as we write them (@REQ-IDENTY-0103) and as upstream does (@req_identy_0103).
REQ_TAG = re.compile(r"^@?req[-_]([a-z]{3,8})[-_](\d{4})$", re.IGNORECASE)
PHASE_VALUE = re.compile(r"^(1\.5|1|2|later)\b")
GATING_PHASE = "1"
REPORTED_PHASES = ("1", "1.5")

SNAPSHOT_HEADER = """\
# Every requirement tabulated in ../shared/spec/requirements_scope.md with its phase.
# scripts/trace_requirements.py reads this file when the scope document is absent.
# Regenerate with: python scripts/trace_requirements.py --snapshot
# Columns (tab-separated): requirement ID, phase (1, 1.5, 2 or later), phase as the scope document writes it.
"""


class TraceError(Exception):
    """Bad input: the tracer cannot produce a report (exit status 2)."""


# --------------------------------------------------------------------------
# Requirements: the scope document or its snapshot


@dataclass(frozen=True)
class Requirement:
    req_id: str
    phase: str  # "1", "1.5", "2" or "later"
    label: str  # the phase cell as written, e.g. "1 (ingest) / later (updates)"

    @property
    def family(self) -> str:
        return self.req_id.split("-")[1]


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row, honouring ``\\|`` escapes."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", body)]


def _plain(cell: str) -> str:
    return re.sub(r"<br\s*/?>.*$", "", cell).replace("*", "").replace("`", "").strip()


def parse_scope(text: str) -> tuple[dict[str, Requirement], dict[str, dict[str, int]]]:
    """Requirements from the scope document's requirement tables, and its per-family count table.

    A requirement table is one whose header has a ``REQ ID`` and a ``Phase``
    column; other tables (crosswalk, deviations) are ignored.
    """
    reqs: dict[str, Requirement] = {}
    counts: dict[str, dict[str, int]] = {}
    phase_col: int | None = None
    count_cols: list[str] | None = None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            phase_col = None
            count_cols = None
            continue
        cells = _cells(line)
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue  # the separator row
        if phase_col is None and count_cols is None:
            names = [_plain(c).lower() for c in cells]
            if "req id" in names and "phase" in names:
                phase_col = names.index("phase")
            elif names[:1] == ["family"] and "phase 1" in names:
                count_cols = names
            else:
                phase_col = -1  # a table we do not read
            continue
        if count_cols is not None:
            family = _plain(cells[0])
            if re.fullmatch(r"[A-Z]{3,8}", family):
                row = {}
                for name, cell in zip(count_cols[1:], cells[1:], strict=False):
                    if name.startswith("phase "):
                        row[name[len("phase ") :]] = int(_plain(cell) or 0)
                    elif name in ("later", "total"):
                        row[name] = int(_plain(cell) or 0)
                counts[family] = row
            continue
        if phase_col is None or phase_col < 0 or len(cells) <= phase_col:
            continue
        match = REQ_ID.search(cells[0])
        if not match:
            continue
        label = _plain(cells[phase_col])
        phase = PHASE_VALUE.match(label)
        if not phase:
            raise TraceError(f"{match.group(0)}: cannot read the phase {cells[phase_col]!r}")
        req = Requirement(match.group(0), phase.group(1), label)
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


@dataclass
class Scope:
    requirements: dict[str, Requirement]
    source: str  # a description for the report
    warnings: list[str] = field(default_factory=list)


def load_scope(scope_path: Path, snapshot_path: Path) -> Scope:
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


# --------------------------------------------------------------------------
# Scenarios: features/**/*.feature

SCENARIO_KEYWORDS = ("Scenario Outline", "Scenario Template", "Scenario", "Example")
EXAMPLES_KEYWORDS = ("Examples", "Scenarios")


@dataclass
class Scenario:
    feature: str  # path relative to the features base directory, with "/"
    name: str
    line: int
    tags: set[str] = field(default_factory=set)  # own tags plus inherited ones, with "@"
    outline: bool = False

    @property
    def req_ids(self) -> set[str]:
        out = set()
        for tag in self.tags:
            m = REQ_TAG.match(tag)
            if m:
                out.add(f"REQ-{m.group(1).upper()}-{m.group(2)}")
        return out

    @property
    def key(self) -> tuple[str, str]:
        return (self.feature, self.name)


def _keyword(stripped: str, keywords: Sequence[str]) -> str | None:
    for kw in keywords:
        if stripped.startswith(kw) and stripped[len(kw) :].lstrip().startswith(":"):
            return kw
    return None


def _tags_of(stripped: str) -> list[str]:
    tags = []
    for word in stripped.split():
        if word.startswith("#"):
            break  # a comment after the tags
        if word.startswith("@"):
            tags.append(word)
    return tags


def parse_feature(text: str, rel_path: str) -> list[Scenario]:
    """Scenarios of one Gherkin file (English keywords), with inherited tags."""
    scenarios: list[Scenario] = []
    pending: list[str] = []
    feature_tags: set[str] = set()
    rule_tags: set[str] = set()
    current: Scenario | None = None
    fence: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith('"""') or stripped.startswith("```"):
            fence = stripped[:3]
            continue
        if not stripped or stripped.startswith("#") or stripped.startswith("|"):
            continue
        if stripped.startswith("@"):
            pending.extend(_tags_of(stripped))
            continue
        if _keyword(stripped, ("Feature",)):
            feature_tags, rule_tags, pending, current = set(pending), set(), [], None
        elif _keyword(stripped, ("Rule",)):
            rule_tags, pending, current = set(pending), [], None
        elif _keyword(stripped, ("Background",)):
            pending, current = [], None
        elif kw := _keyword(stripped, SCENARIO_KEYWORDS):
            name = stripped[len(kw) :].lstrip()[1:].strip()
            current = Scenario(
                rel_path,
                name,
                number,
                set(pending) | feature_tags | rule_tags,
                outline="Outline" in kw or "Template" in kw,
            )
            scenarios.append(current)
            pending = []
        elif _keyword(stripped, EXAMPLES_KEYWORDS):
            if current is not None:
                current.outline = True
                current.tags |= set(pending)
            pending = []
        # Anything else is a step or description text.
    return scenarios


def load_features(features_dir: Path) -> tuple[list[Scenario], list[str]]:
    scenarios: list[Scenario] = []
    warnings: list[str] = []
    for path in sorted(features_dir.rglob("*.feature")):
        rel = path.relative_to(features_dir).as_posix()
        found = parse_feature(path.read_text(encoding="utf-8"), rel)
        seen: set[str] = set()
        for s in found:
            if s.name in seen:
                warnings.append(f"{rel}: two scenarios are named {s.name!r}; pytest-bdd binds only one")
            seen.add(s.name)
        scenarios.extend(found)
    return scenarios, warnings


# --------------------------------------------------------------------------
# Scenario -> pytest test names

PYTHON_REPLACE = re.compile(r"\W")
LEADING_DIGITS = re.compile(r"^\d+_*")


def python_name(name: str) -> str:
    """pytest-bdd's ``make_python_name``: the test name stem of a scenario."""
    return LEADING_DIGITS.sub("", PYTHON_REPLACE.sub("", name.replace(" ", "_"))).lower()


def features_base_dir(repo: Path) -> Path:
    """``bdd_features_base_dir`` from pytest.ini (relative to the repository), else ``features``."""
    ini = repo / "pytest.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini, encoding="utf-8")
            value = parser.get("pytest", "bdd_features_base_dir", fallback="").strip()
        except configparser.Error:
            value = ""
        if value:
            return (repo / value).resolve()
    return (repo / "features").resolve()


@dataclass
class Binding:
    module: str  # dotted, as JUnit's classname has it: tests.acceptance.test_auth
    test_name: str  # test_... without parameters


def _str_args(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _module_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def _resolve_feature(arg: str, module_path: Path, base: Path) -> str | None:
    for candidate in (Path(arg), base / arg, module_path.parent / arg):
        if candidate.is_file():
            try:
                return candidate.resolve().relative_to(base).as_posix()
            except ValueError:
                return None
    return None


def discover_bindings(
    repo: Path, test_dirs: Iterable[Path], base: Path, scenarios: list[Scenario]
) -> tuple[dict[tuple[str, str], list[Binding]], list[str]]:
    """Which test module binds which scenario, under which test name (static reading of the modules)."""
    by_feature: dict[str, list[Scenario]] = {}
    for s in scenarios:
        by_feature.setdefault(s.feature, []).append(s)
    bindings: dict[tuple[str, str], list[Binding]] = {}
    warnings: list[str] = []
    for test_dir in test_dirs:
        for path in sorted(test_dir.rglob("*.py")):
            try:
                source = path.read_text(encoding="utf-8")
            except OSError:
                continue
            if "scenario" not in source:
                continue
            try:
                tree = ast.parse(source, str(path))
            except SyntaxError as exc:
                warnings.append(f"{path}: cannot parse ({exc.msg})")
                continue
            try:
                module = ".".join(path.resolve().relative_to(repo).with_suffix("").parts)
            except ValueError:  # a test directory outside the repository
                module = path.stem
            taken = _module_level_names(tree)
            explicit: set[tuple[str, str]] = set()
            # @scenario("file.feature", "name") on a function: that function is the test.
            for node in ast.walk(tree):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and _call_name(deco.func) == "scenario":
                        args = _str_args(deco)
                        if len(args) >= 2:
                            rel = _resolve_feature(args[0], path, base)
                            if rel is None:
                                warnings.append(f"{path}: feature file {args[0]!r} not found under {base}")
                                continue
                            explicit.add((rel, args[1]))
                            bindings.setdefault((rel, args[1]), []).append(Binding(module, node.name))
            # scenarios("a.feature", ...): every other scenario of those files, named as pytest-bdd names them.
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _call_name(node.func) == "scenarios"):
                    continue
                for arg in _str_args(node):
                    rel = _resolve_feature(arg, path, base)
                    if rel is None:
                        found = [f for f in by_feature if f == arg or f.startswith(arg.rstrip("/") + "/")]
                        if not found:
                            warnings.append(f"{path}: feature path {arg!r} not found under {base}")
                        files = found
                    else:
                        files = [rel]
                    for rel_file in files:
                        for s in by_feature.get(rel_file, []):
                            if s.key in explicit:
                                continue
                            stem = "test_" + python_name(s.name)
                            name, index = stem, 0
                            while name in taken:
                                index += 1
                                name = f"{stem}_{index}"
                            taken.add(name)
                            bindings.setdefault(s.key, []).append(Binding(module, name))
    return bindings, warnings


# --------------------------------------------------------------------------
# Test results: JUnit XML


@dataclass
class Outcome:
    classname: str
    name: str  # with the parameter id, if any
    status: str  # pass, fail, skipped
    source: str  # the JUnit file

    @property
    def base_name(self) -> str:
        return self.name.split("[", 1)[0]


def load_junit(paths: Sequence[Path]) -> tuple[list[Outcome], list[str]]:
    outcomes: list[Outcome] = []
    notes: list[str] = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise TraceError(f"{path}: not a readable JUnit XML file ({exc})") from exc
        count = 0
        for case in root.iter("testcase"):
            children = {child.tag for child in case}
            if children & {"failure", "error"}:
                status = "fail"
            elif "skipped" in children:
                status = "skipped"
            else:
                status = "pass"
            outcomes.append(Outcome(case.get("classname", ""), case.get("name", ""), status, path.name))
            count += 1
        stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        notes.append(f"{path.name}: {count} test cases, written {stamp}")
    return outcomes, notes


# --------------------------------------------------------------------------
# Joining them


@dataclass
class ScenarioResult:
    scenario: Scenario
    status: str  # pass, fail, skipped, not run
    tests: list[Outcome]
    matched_by_name_only: bool = False


def scenario_results(
    scenarios: list[Scenario], bindings: dict[tuple[str, str], list[Binding]], outcomes: list[Outcome]
) -> list[ScenarioResult]:
    by_module_name: dict[tuple[str, str], list[Outcome]] = {}
    by_name: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_module_name.setdefault((o.classname, o.base_name), []).append(o)
        by_name.setdefault(o.base_name, []).append(o)
    results = []
    for s in scenarios:
        tests: list[Outcome] = []
        by_name_only = False
        bound = bindings.get(s.key)
        if bound:
            for b in bound:
                tests.extend(by_module_name.get((b.module, b.test_name), []))
        else:
            # No module binds it statically: fall back to pytest-bdd's default name anywhere.
            tests = list(by_name.get("test_" + python_name(s.name), []))
            by_name_only = bool(tests)
        statuses = {t.status for t in tests}
        if not tests:
            status = "not run"
        elif "fail" in statuses:
            status = "fail"
        elif "pass" in statuses:
            status = "pass"
        else:
            status = "skipped"
        results.append(ScenarioResult(s, status, tests, by_name_only))
    return results


@dataclass
class Exception_:
    req_id: str
    reason: str
    line: int


def load_exceptions(path: Path) -> tuple[dict[str, Exception_], list[str]]:
    entries: dict[str, Exception_] = {}
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
        entries[req_id] = Exception_(req_id, reason, number)
    return entries, problems


@dataclass
class ReqResult:
    requirement: Requirement
    scenarios: list[ScenarioResult]
    exception: Exception_ | None

    @property
    def passing(self) -> list[ScenarioResult]:
        return [s for s in self.scenarios if s.status == "pass"]

    @property
    def failing(self) -> list[ScenarioResult]:
        return [s for s in self.scenarios if s.status == "fail"]

    @property
    def state(self) -> str:
        """proven, failing, unproven (scenarios, none ran or all skipped) or not covered (no scenario)."""
        if self.passing:
            return "proven"
        if self.failing:
            return "failing"
        if self.scenarios:
            return "unproven"
        return "not covered"


@dataclass
class Report:
    scope: Scope
    results: dict[str, ReqResult]
    scenario_results: list[ScenarioResult]
    junit_notes: list[str]
    errors: list[str]
    warnings: list[str]
    extra_tags: dict[str, list[ScenarioResult]]  # requirement IDs tagged but outside Phase 1/1.5


def evaluate(
    scope: Scope,
    results: list[ScenarioResult],
    exceptions: dict[str, Exception_],
    exception_problems: list[str],
    junit_notes: list[str],
    warnings: list[str],
) -> Report:
    reqs = scope.requirements
    by_req: dict[str, list[ScenarioResult]] = {}
    for r in results:
        for req_id in r.scenario.req_ids:
            by_req.setdefault(req_id, []).append(r)
    table: dict[str, ReqResult] = {}
    for req in sorted(reqs.values(), key=lambda x: x.req_id):
        if req.phase in REPORTED_PHASES:
            table[req.req_id] = ReqResult(req, by_req.get(req.req_id, []), exceptions.get(req.req_id))
    errors = list(exception_problems)
    for req_id, exc in sorted(exceptions.items()):
        req = reqs.get(req_id)
        if req is None:
            errors.append(f"allowlist: {req_id} (line {exc.line}) is not a requirement of the scope document")
        elif req.phase != GATING_PHASE:
            errors.append(f"allowlist: {req_id} (line {exc.line}) is phase {req.phase}, only Phase 1 can be listed")
    for req_id, rr in table.items():
        if rr.requirement.phase != GATING_PHASE:
            continue
        state = rr.state
        if state == "failing":
            names = "; ".join(f"{s.scenario.feature}: {s.scenario.name}" for s in rr.failing)
            errors.append(f"{req_id}: no scenario proving it passes, and these fail: {names}")
        elif state in ("unproven", "not covered") and rr.exception is None:
            what = "its scenarios did not run" if state == "unproven" else "no scenario is tagged with it"
            errors.append(f"{req_id}: not proven ({what}) and not in the allowlist")
        elif state == "proven" and rr.exception is not None:
            errors.append(
                f"{req_id}: proven by {len(rr.passing)} passing scenario(s) but still in the allowlist"
                f" (line {rr.exception.line}); remove it"
            )
        elif state == "proven" and rr.failing:
            names = "; ".join(f"{s.scenario.feature}: {s.scenario.name}" for s in rr.failing)
            warnings.append(f"{req_id}: proven, but these of its scenarios fail: {names}")
    extra: dict[str, list[ScenarioResult]] = {}
    for req_id, found in sorted(by_req.items()):
        if req_id not in table:
            extra[req_id] = found
    return Report(scope, table, results, junit_notes, errors, warnings, extra)


# --------------------------------------------------------------------------
# Output

STATUS_MARK = {"pass": "pass", "fail": "FAIL", "skipped": "skipped", "not run": "not run"}


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _state_text(rr: ReqResult) -> str:
    state = rr.state
    text = {"proven": "proven", "failing": "**FAILING**", "unproven": "unproven", "not covered": "not covered"}[state]
    if rr.exception is not None:
        text += f" (allowlisted: {_md(rr.exception.reason)})"
        if state == "proven":
            text += " **stale allowlist entry**"
    elif state in ("unproven", "not covered") and rr.requirement.phase == GATING_PHASE:
        text = f"**{text}**"
    return text


def _scenario_text(r: ScenarioResult) -> str:
    note = " (matched by test name only)" if r.matched_by_name_only else ""
    return f"{STATUS_MARK[r.status]}: `{r.scenario.feature}` {_md(r.scenario.name)}{note}"


def counts(report: Report, phase: str) -> dict[str, int]:
    rows = [rr for rr in report.results.values() if rr.requirement.phase == phase]
    out = {
        "total": len(rows),
        "proven": sum(1 for rr in rows if rr.state == "proven"),
        "not covered": sum(1 for rr in rows if rr.state == "not covered"),
        "unproven": sum(1 for rr in rows if rr.state == "unproven"),
        "failing": sum(1 for rr in rows if rr.state == "failing"),
        "allowlisted": sum(1 for rr in rows if rr.exception is not None),
    }
    return out


def summary_lines(report: Report) -> list[str]:
    lines = []
    for phase in REPORTED_PHASES:
        c = counts(report, phase)
        lines.append(
            f"Phase {phase}: {c['total']} requirements: {c['proven']} proven (a passing scenario),"
            f" {c['not covered']} not covered (no scenario), {c['unproven']} with scenarios that did not run,"
            f" {c['failing']} failing; {c['allowlisted']} in the allowlist"
        )
    sc = report.scenario_results
    lines.append(
        f"Scenarios: {len(sc)}: {sum(r.status == 'pass' for r in sc)} pass,"
        f" {sum(r.status == 'fail' for r in sc)} fail, {sum(r.status == 'skipped' for r in sc)} skipped,"
        f" {sum(r.status == 'not run' for r in sc)} not run"
    )
    return lines


def render_markdown(report: Report) -> str:
    out: list[str] = []
    out.append("# Requirement traceability\n")
    out.append(
        "Generated by `scripts/trace_requirements.py`. A requirement is *proven* when at least one"
        " scenario tagged with it passed in the JUnit results below; Phase 1 requirements that are not"
        " proven must be listed, with a reason, in `docs/trace_exceptions.txt`.\n"
    )
    out.append(f"- Requirements: {report.scope.source}")
    out.append(f"- Scenarios: {len(report.scenario_results)} in `features/**/*.feature`")
    out.append("- Test results: " + ("; ".join(report.junit_notes) if report.junit_notes else "none"))
    out.append("")
    out.append("## Summary\n")
    for line in summary_lines(report):
        out.append(f"- {line}")
    out.append(f"- Gate: {'FAILED' if report.errors else 'passed'}")
    out.append("")
    if report.errors:
        out.append("### Gate failures\n")
        out.extend(f"- {_md(e)}" for e in report.errors)
        out.append("")
    for phase in REPORTED_PHASES:
        out.append(f"## Phase {phase}\n")
        out.append("| Requirement | Phase (scope) | Status | Scenarios |")
        out.append("| --- | --- | --- | --- |")
        for req_id, rr in report.results.items():
            if rr.requirement.phase != phase:
                continue
            scen = "<br>".join(_scenario_text(s) for s in rr.scenarios) or "none"
            out.append(f"| {req_id} | {_md(rr.requirement.label)} | {_state_text(rr)} | {scen} |")
        out.append("")
    if report.extra_tags:
        out.append("## Tagged requirements outside Phase 1 and 1.5\n")
        out.append("| Requirement | Phase (scope) | Scenarios |")
        out.append("| --- | --- | --- |")
        for req_id, found in report.extra_tags.items():
            req = report.scope.requirements.get(req_id)
            label = _md(req.label) if req else "not in the scope document"
            out.append(f"| {req_id} | {label} | {'<br>'.join(_scenario_text(s) for s in found)} |")
        out.append("")
    untagged = [r for r in report.scenario_results if not r.scenario.req_ids]
    if untagged:
        out.append("## Scenarios without a requirement tag\n")
        out.extend(f"- {_scenario_text(r)}" for r in untagged)
        out.append("")
    if report.warnings:
        out.append("## Warnings\n")
        out.extend(f"- {_md(w)}" for w in report.warnings)
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Command line


def default_test_dirs(repo: Path) -> list[Path]:
    dirs = [repo / "tests"]
    dirs.extend(sorted(p for p in (repo / "plugins").glob("*/tests") if p.is_dir()))
    return [d for d in dirs if d.is_dir()]


def junit_files(patterns: Sequence[str], repo: Path) -> list[Path]:
    found: dict[Path, None] = {}
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else str(repo / pattern)
        for name in sorted(glob.glob(full)):
            found[Path(name).resolve()] = None
    return list(found)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--repo", type=Path, default=REPO, help="repository root (default: this script's parent's parent)")
    p.add_argument("--scope", type=Path, help="scope document (default: <repo>/../shared/spec/requirements_scope.md)")
    p.add_argument(
        "--snapshot-file", type=Path, help="requirement snapshot (default: <repo>/docs/requirements_scope_ids.txt)"
    )
    p.add_argument("--snapshot", action="store_true", help="(re)write the snapshot from the scope document, then exit")
    p.add_argument("--features", type=Path, help="features directory (default: pytest.ini's bdd_features_base_dir)")
    p.add_argument(
        "--tests",
        type=Path,
        action="append",
        help="directory of test modules binding scenarios (repeatable; default: tests and plugins/*/tests)",
    )
    p.add_argument(
        "--junit",
        action="append",
        help="JUnit XML file or glob, relative to the repository (repeatable; default: artifacts/junit-*.xml)",
    )
    p.add_argument("--exceptions", type=Path, help="allowlist (default: <repo>/docs/trace_exceptions.txt)")
    p.add_argument("--output", type=Path, help="Markdown report (default: <repo>/artifacts/traceability.md)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    repo: Path = args.repo.resolve()
    scope_path: Path = args.scope or (repo.parent / "shared" / "spec" / "requirements_scope.md")
    snapshot_path: Path = args.snapshot_file or (repo / "docs" / "requirements_scope_ids.txt")
    try:
        if args.snapshot:
            if not scope_path.is_file():
                raise TraceError(f"--snapshot needs the scope document, and {scope_path} does not exist")
            text = scope_path.read_text(encoding="utf-8")
            reqs, table_counts = parse_scope(text)
            for problem in count_mismatches(reqs, table_counts):
                print(f"warning: {problem}", file=sys.stderr)
            snapshot_path.parent.mkdir(parents=True, exist_ok=True)
            snapshot_path.write_text(render_snapshot(reqs, text), encoding="utf-8")
            by_phase = {p: sum(1 for r in reqs.values() if r.phase == p) for p in ("1", "1.5", "2", "later")}
            print(
                f"wrote {snapshot_path}: {len(reqs)} requirements"
                f" ({', '.join(f'phase {p}: {n}' for p, n in by_phase.items())})"
            )
            return OK

        scope = load_scope(scope_path, snapshot_path)
        base = (args.features or features_base_dir(repo)).resolve()
        if not base.is_dir():
            raise TraceError(f"features directory {base} not found")
        scenarios, feature_warnings = load_features(base)
        test_dirs = [d.resolve() for d in args.tests] if args.tests else default_test_dirs(repo)
        bindings, binding_warnings = discover_bindings(repo, test_dirs, base, scenarios)
        paths = junit_files(args.junit or ["artifacts/junit-*.xml"], repo)
        if not paths:
            raise TraceError(
                "no JUnit XML found ({}): run the suites first, e.g. `tox -e py311-pg18,e2e,trace`".format(
                    ", ".join(args.junit or ["artifacts/junit-*.xml"])
                )
            )
        outcomes, junit_notes = load_junit(paths)
        results = scenario_results(scenarios, bindings, outcomes)
        exceptions, exception_problems = load_exceptions(args.exceptions or (repo / "docs" / "trace_exceptions.txt"))
        warnings = scope.warnings + feature_warnings + binding_warnings
        for r in results:
            if r.status == "not run" and r.scenario.key not in bindings:
                warnings.append(f"{r.scenario.feature}: {r.scenario.name!r} is bound by no test module")
        report = evaluate(scope, results, exceptions, exception_problems, junit_notes, warnings)
    except TraceError as exc:
        print(f"trace_requirements: {exc}", file=sys.stderr)
        return USAGE

    output: Path = args.output or (repo / "artifacts" / "traceability.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(report), encoding="utf-8")

    print(f"requirements: {scope.source}")
    for note in junit_notes:
        print(f"junit: {note}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for line in summary_lines(report):
        print(line)
    for error in report.errors:
        print(f"FAIL: {error}")
    print(f"report: {output}")
    return GATE_FAILED if report.errors else OK


if __name__ == "__main__":
    sys.exit(main())
