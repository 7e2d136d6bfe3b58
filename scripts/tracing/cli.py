"""The command line of ``scripts/trace_requirements.py``: reads the inputs, writes the report, sets the exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import TraceError
from . import __doc__ as PACKAGE_DOC
from .allowlist import load_allowlist
from .bindings import discover_bindings
from .features import features_base_dir, load_features
from .gate import Report, evaluate
from .junit import DEFAULT_PATTERN, junit_files, load_junit
from .report import render_markdown, summary_lines
from .requirements import count_mismatches, load_scope, parse_scope, render_snapshot
from .results import scenario_results

REPO = Path(__file__).resolve().parents[2]

# Exit statuses.
OK = 0
GATE_FAILED = 1
USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(PACKAGE_DOC or "").split("\n\n", 1)[0])
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


def default_test_dirs(repo: Path) -> list[Path]:
    dirs = [repo / "tests"]
    dirs.extend(sorted(p for p in (repo / "plugins").glob("*/tests") if p.is_dir()))
    return [d for d in dirs if d.is_dir()]


def write_snapshot(scope_path: Path, snapshot_path: Path) -> None:
    """``--snapshot``: regenerate the snapshot from the scope document and say what it holds."""
    if not scope_path.is_file():
        raise TraceError(f"--snapshot needs the scope document, and {scope_path} does not exist")
    text = scope_path.read_text(encoding="utf-8")
    reqs, table_counts = parse_scope(text)
    for problem in count_mismatches(reqs, table_counts):
        print(f"warning: {problem}", file=sys.stderr)
    snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot_path.write_text(render_snapshot(reqs, text), encoding="utf-8")
    by_phase = {p: sum(1 for r in reqs.values() if r.phase == p) for p in ("1", "1.5", "2", "later")}
    per_phase = ", ".join(f"phase {p}: {n}" for p, n in by_phase.items())
    print(f"wrote {snapshot_path}: {len(reqs)} requirements ({per_phase})")


def trace(args: argparse.Namespace, repo: Path, scope_path: Path, snapshot_path: Path) -> Report:
    """Read every input and join them into the report."""
    scope = load_scope(scope_path, snapshot_path)
    base = (args.features or features_base_dir(repo)).resolve()
    if not base.is_dir():
        raise TraceError(f"features directory {base} not found")
    scenarios, feature_warnings = load_features(base)
    test_dirs = [d.resolve() for d in args.tests] if args.tests else default_test_dirs(repo)
    bindings, binding_warnings = discover_bindings(repo, test_dirs, base, scenarios)
    patterns = args.junit or [DEFAULT_PATTERN]
    paths = junit_files(patterns, repo)
    if not paths:
        raise TraceError(
            f"no JUnit XML found ({', '.join(patterns)}): run the suites first, e.g. `tox -e py311-pg18,e2e,trace`"
        )
    outcomes, junit_notes = load_junit(paths)
    results = scenario_results(scenarios, bindings, outcomes)
    allowlist, allowlist_problems = load_allowlist(args.exceptions or (repo / "docs" / "trace_exceptions.txt"))
    warnings = scope.warnings + feature_warnings + binding_warnings
    for r in results:
        if r.status == "not run" and r.scenario.key not in bindings:
            warnings.append(f"{r.scenario.feature}: {r.scenario.name!r} is bound by no test module")
    return evaluate(scope, results, allowlist, allowlist_problems, junit_notes, warnings)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    repo: Path = args.repo.resolve()
    scope_path: Path = args.scope or (repo.parent / "shared" / "spec" / "requirements_scope.md")
    snapshot_path: Path = args.snapshot_file or (repo / "docs" / "requirements_scope_ids.txt")
    try:
        if args.snapshot:
            write_snapshot(scope_path, snapshot_path)
            return OK
        report = trace(args, repo, scope_path, snapshot_path)
    except TraceError as exc:
        print(f"trace_requirements: {exc}", file=sys.stderr)
        return USAGE

    output: Path = args.output or (repo / "artifacts" / "traceability.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(report), encoding="utf-8")

    print(f"requirements: {report.scope.source}")
    for note in report.junit_notes:
        print(f"junit: {note}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for line in summary_lines(report):
        print(line)
    for error in report.errors:
        print(f"FAIL: {error}")
    print(f"report: {output}")
    return GATE_FAILED if report.errors else OK
