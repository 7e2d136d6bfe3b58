"""scripts/trace_requirements.py (and its package scripts/tracing/) on small synthetic repositories.

Each test builds a repository in tmp_path (a scope document beside it in
``shared/spec/``, feature files, a test module that binds them, JUnit XML),
runs the tracer's ``main`` and checks the exit status, the summary and the
Markdown report.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# The tracer's package, importable as `python scripts/trace_requirements.py` has it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from tracing import TraceError
from tracing.allowlist import load_allowlist
from tracing.bindings import discover_bindings, python_name
from tracing.features import features_base_dir, load_features, parse_feature
from tracing.requirements import count_mismatches, parse_scope, parse_snapshot, render_snapshot

REPO = Path(__file__).resolve().parent.parent
# The entry point itself: its main() is what the gate tests run.
_spec = importlib.util.spec_from_file_location("trace_requirements", REPO / "scripts" / "trace_requirements.py")
assert _spec is not None and _spec.loader is not None
tr: Any = importlib.util.module_from_spec(_spec)
sys.modules["trace_requirements"] = tr
_spec.loader.exec_module(tr)

SCOPE = """\
# Scope

## 2 Counts

| Family | Total | Phase 1 | Phase 1.5 | Phase 2 | Later |
| --- | ---: | ---: | ---: | ---: | ---: |
| ALPHAS | 6 | 3 | 1 | 1 | 1 |
| **All tabulated** | **6** | **3** | **1** | **1** | **1** |

## 5 Tables

| REQ ID | What it demands (paraphrase) | Phase | How a test could show it |
| --- | --- | --- | --- |
| **REQ-ALPHAS-0001** | Umbrella with a `a\\|b` pipe. | **1** | x |
| **REQ-ALPHAS-0002**<br>_gap era: 0009_ | Two. | **1 (ingest) / later (updates)** | x |
| **REQ-ALPHAS-0003** | Three. | **1 (deviation)** | x |
| REQ-ALPHAS-0004 | Four. | 1.5 | x |
| REQ-ALPHAS-0005 | Five. | 2 | x |
| REQ-ALPHAS-0006 | Six. | later | x |

## 7 Crosswalk

| Gap-era ID | Meaning | Newest ID | Note |
| --- | --- | --- | --- |
| REQ-ALPHAS-0009 | Old | REQ-ALPHAS-0002 | renumbered |

## 10 Deviations

| REQ | Go-specific demand | Python equivalent to test |
| --- | --- | --- |
| REQ-ALPHAS-0003 | Go | 1 Python |
"""

FEATURE = """\
@REQ-ALPHAS-0001
Feature: Alpha
  Some description.

  Background:
    Given a thing

  @REQ-ALPHAS-0002 @phase1
  Scenario: Two is proven
    Given a thing
    \"\"\"
    @REQ-ALPHAS-0003 inside a doc string is no tag
    Scenario: nor is this a scenario
    \"\"\"

  @REQ-ALPHAS-0004
  Scenario Outline: Four per <x>
    Given <x>
    Examples:
      | x |
      | a |
      | b |
"""

TEST_MODULE = """\
from pytest_bdd import scenarios

scenarios("alpha.feature")
"""


def junit(*cases: tuple[str, str, str], classname: str = "tests.acceptance.test_alpha") -> str:
    """JUnit XML with (name, status, classname-or-empty) cases; status pass, fail, error or skipped."""
    rows = []
    for name, status, cls in cases:
        inner = {
            "pass": "",
            "fail": '<failure message="boom">trace</failure>',
            "error": '<error message="boom">trace</error>',
            "skipped": '<skipped message="skip" type="pytest.skip" />',
        }[status]
        rows.append(f'<testcase classname="{cls or classname}" name="{name}" time="0.1">{inner}</testcase>')
    return (
        f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="{len(rows)}">'
        f"{''.join(rows)}</testsuite></testsuites>"
    )


class Repo:
    def __init__(self, root: Path):
        self.root = root / "repo"
        self.scope = root / "shared" / "spec" / "requirements_scope.md"
        self.features = self.root / "features"
        self.tests = self.root / "tests" / "acceptance"
        self.artifacts = self.root / "artifacts"
        self.exceptions = self.root / "docs" / "trace_exceptions.txt"
        self.report = self.artifacts / "traceability.md"
        for d in (self.scope.parent, self.features, self.tests, self.artifacts, self.exceptions.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.scope.write_text(SCOPE)
        (self.features / "alpha.feature").write_text(FEATURE)
        (self.tests / "test_alpha.py").write_text(TEST_MODULE)

    def junit(self, name: str, *cases: tuple[str, str, str]) -> None:
        (self.artifacts / f"junit-{name}.xml").write_text(junit(*cases))

    def allow(self, *lines: str) -> None:
        self.exceptions.write_text("# allowlist\n" + "".join(f"{line}\n" for line in lines))

    def run(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
        code = tr.main(["--repo", str(self.root), *extra])
        out = capsys.readouterr()
        report = self.report.read_text() if self.report.exists() else ""
        return code, out.out + out.err, report


TWO = "test_two_is_proven"
FOUR = "test_four_per_x"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


# ---------------------------------------------------------------- parsing


def test_scope_tables_give_ids_and_phases_and_ignore_other_tables() -> None:
    reqs, counts = parse_scope(SCOPE)
    assert {r: (q.phase, q.label) for r, q in reqs.items()} == {
        "REQ-ALPHAS-0001": ("1", "1"),
        "REQ-ALPHAS-0002": ("1", "1 (ingest) / later (updates)"),
        "REQ-ALPHAS-0003": ("1", "1 (deviation)"),
        "REQ-ALPHAS-0004": ("1.5", "1.5"),
        "REQ-ALPHAS-0005": ("2", "2"),
        "REQ-ALPHAS-0006": ("later", "later"),
    }
    assert counts == {"ALPHAS": {"total": 6, "1": 3, "1.5": 1, "2": 1, "later": 1}}
    assert count_mismatches(reqs, counts) == []
    counts["ALPHAS"]["1"] = 4
    assert count_mismatches(reqs, counts) == ["ALPHAS phase 1: the count table says 4, the tables list 3"]


def test_an_unreadable_phase_is_an_error() -> None:
    with pytest.raises(TraceError, match="REQ-ALPHAS-0007"):
        parse_scope(SCOPE + "\n| REQ ID | x | Phase | y |\n| - | - | - | - |\n| REQ-ALPHAS-0007 | x | soon | y |\n")


def test_feature_parsing_inherits_feature_rule_and_examples_tags() -> None:
    text = textwrap.dedent(
        """\
        # a comment
        @REQ-ALPHAS-0001 @feature_tag
        Feature: F
          @REQ-ALPHAS-0002
          Rule: R
            @REQ-ALPHAS-0003 @phase1  # trailing comment
            Example: In a rule
              Given x

          @REQ-ALPHAS-0004
          Scenario Template: T
            Given <a>
            @REQ-ALPHAS-0005
            Scenarios:
              | a |
              | 1 |
        """
    )
    got = parse_feature(text, "f.feature")
    assert [(s.name, s.outline, s.req_ids) for s in got] == [
        ("In a rule", False, {"REQ-ALPHAS-0001", "REQ-ALPHAS-0002", "REQ-ALPHAS-0003"}),
        ("T", True, {"REQ-ALPHAS-0001", "REQ-ALPHAS-0002", "REQ-ALPHAS-0004", "REQ-ALPHAS-0005"}),
    ]
    assert "@feature_tag" in got[0].tags and "@phase1" in got[0].tags


def test_upstream_style_lower_case_tags_count_too() -> None:
    (s,) = parse_feature("Feature: F\n  @req_orches_0122\n  Scenario: S\n    Given x\n", "f.feature")
    assert s.req_ids == {"REQ-ORCHES-0122"}


def test_doc_strings_hide_tags_and_keywords(repo: Repo) -> None:
    scenarios, warnings = load_features(repo.features)
    assert [(s.name, sorted(s.req_ids)) for s in scenarios] == [
        ("Two is proven", ["REQ-ALPHAS-0001", "REQ-ALPHAS-0002"]),
        ("Four per <x>", ["REQ-ALPHAS-0001", "REQ-ALPHAS-0004"]),
    ]
    assert warnings == []


def test_test_names_follow_pytest_bdd() -> None:
    assert python_name("A node's 2nd try: 413 & more!") == "a_nodes_2nd_try_413__more"
    assert python_name("3 tasks survive") == "tasks_survive"
    pytest_bdd_scenario = pytest.importorskip("pytest_bdd.scenario")
    for name in ("A node's 2nd try: 413 & more!", "3 tasks survive", "Über <x> / ü"):
        assert python_name(name) == pytest_bdd_scenario.make_python_name(name)


def test_the_parser_agrees_with_pytest_bdd_on_the_real_feature_files() -> None:
    parser = pytest.importorskip("pytest_bdd.parser")
    base = features_base_dir(REPO)
    mine = {s.key: s for s in load_features(base)[0]}
    count = 0
    for path in sorted(base.rglob("*.feature")):
        rel = path.relative_to(base).as_posix()
        feature = parser.FeatureParser(str(base), rel).parse()
        for name, scenario in feature.scenarios.items():
            rule = getattr(scenario, "rule", None)
            tags = {"@" + t for t in scenario.tags | feature.tags | (rule.tags if rule is not None else set())}
            for examples in scenario.examples:
                tags |= {"@" + t for t in examples.tags or ()}
            assert mine[(rel, name)].tags == tags
            count += 1
    assert count == len(mine)


def test_duplicate_names_in_one_module_get_pytest_bdds_suffix(repo: Repo) -> None:
    (repo.features / "beta.feature").write_text(
        "Feature: B\n  @REQ-ALPHAS-0003\n  Scenario: Two is proven\n    Given x\n"
    )
    (repo.tests / "test_alpha.py").write_text(
        'from pytest_bdd import scenarios\n\nscenarios("alpha.feature", "beta.feature")\n'
    )
    scenarios, _ = load_features(repo.features)
    bindings, warnings = discover_bindings(repo.root, [repo.root / "tests"], repo.features, scenarios)
    assert warnings == []
    assert [b.test_name for b in bindings[("beta.feature", "Two is proven")]] == ["test_two_is_proven_1"]
    assert [b.module for b in bindings[("alpha.feature", "Two is proven")]] == ["tests.acceptance.test_alpha"]


def test_explicit_scenario_decorator_binds_under_the_functions_name(repo: Repo) -> None:
    (repo.tests / "test_alpha.py").write_text(
        textwrap.dedent(
            """\
            from pytest_bdd import scenario, scenarios

            @scenario("alpha.feature", "Two is proven")
            def test_custom():
                pass

            scenarios("alpha.feature")
            """
        )
    )
    scenarios, _ = load_features(repo.features)
    bindings, _ = discover_bindings(repo.root, [repo.root / "tests"], repo.features, scenarios)
    assert [b.test_name for b in bindings[("alpha.feature", "Two is proven")]] == ["test_custom"]
    assert [b.test_name for b in bindings[("alpha.feature", "Four per <x>")]] == [FOUR]


# ---------------------------------------------------------------- the gate


def test_a_passing_scenario_proves_its_requirements(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "pass", ""), (f"{FOUR}[a]", "pass", ""), (f"{FOUR}[b]", "pass", ""))
    repo.allow("REQ-ALPHAS-0003 a Go-only demand, see docs/decisions.md")
    code, out, report = repo.run(capsys)
    assert code == 0, out
    assert (
        "Phase 1: 3 requirements: 2 proven (a passing scenario), 1 not covered (no scenario),"
        " 0 with scenarios that did not run, 0 failing; 1 in the allowlist" in out
    )
    assert "Phase 1.5: 1 requirements: 1 proven" in out
    assert "| REQ-ALPHAS-0002 | 1 (ingest) / later (updates) | proven | pass: `alpha.feature` Two is proven |" in report
    assert "| REQ-ALPHAS-0003 | 1 (deviation) | not covered (allowlisted: a Go-only demand" in report
    assert "Gate: passed" in report


def test_a_failing_scenario_is_a_failing_proof(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "fail", ""), (f"{FOUR}[a]", "pass", ""), (f"{FOUR}[b]", "pass", ""))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 1
    assert "FAIL: REQ-ALPHAS-0002: no scenario proving it passes, and these fail: alpha.feature: Two is proven" in out
    assert "REQ-ALPHAS-0001" not in "".join(line for line in out.splitlines() if line.startswith("FAIL"))
    assert "| REQ-ALPHAS-0002 | 1 (ingest) / later (updates) | **FAILING** | FAIL: `alpha.feature`" in report


def test_a_failing_proof_fails_even_when_allowlisted(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "error", ""), (f"{FOUR}[a]", "pass", ""))
    repo.allow("REQ-ALPHAS-0002 reason", "REQ-ALPHAS-0003 Go only")
    code, out, _ = repo.run(capsys)
    assert code == 1
    assert "FAIL: REQ-ALPHAS-0002: no scenario proving it passes" in out


def test_one_failing_outline_example_fails_the_scenario(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "pass", ""), (f"{FOUR}[a]", "pass", ""), (f"{FOUR}[b]", "fail", ""))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 0, out  # the outline proves only the Phase 1.5 requirement: not gating
    assert "| REQ-ALPHAS-0004 | 1.5 | **FAILING** | FAIL: `alpha.feature` Four per <x> |" in report
    # REQ-ALPHAS-0001 is proven by the other scenario; the failing one is reported as a warning.
    assert "warning: REQ-ALPHAS-0001: proven, but these of its scenarios fail: alpha.feature: Four per <x>" in out


def test_a_result_in_any_junit_file_counts(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("pg18", (TWO, "pass", ""))
    repo.junit("pg15", (TWO, "fail", ""))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, _ = repo.run(capsys)
    assert code == 1
    assert "REQ-ALPHAS-0002: no scenario proving it passes" in out


def test_an_uncovered_phase_1_requirement_fails_unless_allowlisted(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.junit("a", (TWO, "pass", ""))
    code, out, report = repo.run(capsys)
    assert code == 1
    assert "FAIL: REQ-ALPHAS-0003: not proven (no scenario is tagged with it) and not in the allowlist" in out
    assert "| REQ-ALPHAS-0003 | 1 (deviation) | **not covered** | none |" in report
    assert "Gate: FAILED" in report


def test_scenarios_that_did_not_run_prove_nothing(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "skipped", ""), ("test_unrelated", "pass", "tests.test_other"))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 1
    assert "FAIL: REQ-ALPHAS-0002: not proven (its scenarios did not run) and not in the allowlist" in out
    assert "skipped: `alpha.feature` Two is proven" in report
    assert "not run: `alpha.feature` Four per <x>" in report
    # Uncovered Phase 1.5 requirements are reported, never gated.
    assert "REQ-ALPHAS-0004" not in "".join(line for line in out.splitlines() if line.startswith("FAIL"))


def test_results_of_another_module_with_the_same_test_name_do_not_count(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.junit("a", (TWO, "pass", "tests.acceptance.test_elsewhere"))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, _ = repo.run(capsys)
    assert code == 1
    assert "REQ-ALPHAS-0002: not proven (its scenarios did not run)" in out


def test_an_unbound_feature_falls_back_to_the_test_name(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    (repo.tests / "test_alpha.py").write_text("# binds nothing\n")
    repo.junit("a", (TWO, "pass", "tests.somewhere.test_x"))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 0, out
    assert "pass: `alpha.feature` Two is proven (matched by test name only)" in report
    assert "'Four per <x>' is bound by no test module" in out


def test_an_allowlisted_requirement_that_is_proven_must_leave_the_list(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.junit("a", (TWO, "pass", ""))
    repo.allow("REQ-ALPHAS-0002 was not provable", "REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 1
    assert (
        "FAIL: REQ-ALPHAS-0002: proven by 1 passing scenario(s) but still in the allowlist (line 2); remove it" in out
    )
    assert "**stale allowlist entry**" in report


def test_allowlist_entries_must_be_phase_1_ids_with_a_reason(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.junit("a", (TWO, "pass", ""))
    repo.allow(
        "REQ-ALPHAS-0003 Go only",
        "REQ-ALPHAS-0004 phase 1.5",
        "REQ-ALPHAS-0099 typo",
        "REQ-ALPHAS-0003 twice",
        "REQ-ALPHAS-0005",
        "not-an-id reason",
    )
    code, out, _ = repo.run(capsys)
    assert code == 1
    for message in (
        "REQ-ALPHAS-0004 (line 3) is phase 1.5, only Phase 1 can be listed",
        "REQ-ALPHAS-0099 (line 4) is not a requirement of the scope document",
        "line 5: REQ-ALPHAS-0003 is listed twice",
        "line 6: REQ-ALPHAS-0005 has no reason",
        "line 7: 'not-an-id' is not a requirement ID",
    ):
        assert message in out


# ---------------------------------------------------------------- inputs


def test_without_the_scope_document_the_snapshot_is_used(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.run(capsys, "--snapshot")[0] == 0
    snapshot = repo.root / "docs" / "requirements_scope_ids.txt"
    assert "REQ-ALPHAS-0002\t1\t1 (ingest) / later (updates)\n" in snapshot.read_text()
    repo.scope.unlink()
    repo.junit("a", (TWO, "pass", ""))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, report = repo.run(capsys)
    assert code == 0, out
    assert "(snapshot;" in out and "Phase 1: 3 requirements" in out
    assert "| REQ-ALPHAS-0002 | 1 (ingest) / later (updates) | proven |" in report


def test_a_stale_snapshot_is_reported(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.run(capsys, "--snapshot")
    repo.scope.write_text(SCOPE.replace("| REQ-ALPHAS-0005 | Five. | 2 |", "| REQ-ALPHAS-0005 | Five. | later |"))
    repo.junit("a", (TWO, "pass", ""))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, _ = repo.run(capsys)
    assert code == 0
    assert "differs from" in out and "--snapshot" in out


def test_an_explicit_scope_path_wins(repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "elsewhere.md"
    other.write_text(
        SCOPE.replace("| **REQ-ALPHAS-0003** | Three. | **1 (deviation)** |", "| REQ-ALPHAS-0003 | Three. | later |")
    )
    repo.junit("a", (TWO, "pass", ""))
    code, out, _ = repo.run(capsys, "--scope", str(other))
    assert code == 0, out
    assert "Phase 1: 2 requirements" in out


def test_missing_inputs_are_usage_errors(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = repo.run(capsys)
    assert code == 2 and "no JUnit XML found" in out
    repo.junit("a", (TWO, "pass", ""))
    repo.scope.unlink()
    code, out, _ = repo.run(capsys)
    assert code == 2 and "neither the scope document" in out
    code, out, _ = repo.run(capsys, "--snapshot")
    assert code == 2


def test_explicit_junit_paths(repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.xml"
    path.write_text(junit((TWO, "pass", "")))
    repo.allow("REQ-ALPHAS-0003 Go only")
    code, out, _ = repo.run(capsys, "--junit", str(path))
    assert code == 0, out
    assert "results.xml: 1 test cases" in out


def test_the_checked_in_snapshot_matches_the_scope_document() -> None:
    scope = REPO.parent / "shared" / "spec" / "requirements_scope.md"
    if not scope.is_file():
        pytest.skip("no ../shared/spec/requirements_scope.md beside this clone")
    text = scope.read_text(encoding="utf-8")
    reqs, counts = parse_scope(text)
    assert count_mismatches(reqs, counts) == []
    assert (REPO / "docs" / "requirements_scope_ids.txt").read_text(encoding="utf-8") == render_snapshot(reqs, text)


def test_the_checked_in_allowlist_is_well_formed() -> None:
    snapshot = parse_snapshot((REPO / "docs" / "requirements_scope_ids.txt").read_text(encoding="utf-8"))
    entries, problems = load_allowlist(REPO / "docs" / "trace_exceptions.txt")
    assert problems == []
    assert entries, "docs/trace_exceptions.txt is empty or missing"
    assert [e for e in entries if snapshot[e].phase != "1"] == []
