"""Each scenario's status, from the outcomes of the tests that run it.

A scenario's tests are the ones its bindings name, looked up by module and
test name (every parameter of an outline counts). A scenario no module binds
falls back to pytest-bdd's default test name in any module.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bindings import Bindings, python_name
from .features import Scenario
from .junit import Outcome


@dataclass
class ScenarioResult:
    scenario: Scenario
    status: str  # pass, fail, skipped, not run
    tests: list[Outcome]
    matched_by_name_only: bool = False


def _status(tests: list[Outcome]) -> str:
    """fail if any test failed or errored, else pass if any passed, else skipped; not run without tests."""
    statuses = {t.status for t in tests}
    if not tests:
        return "not run"
    if "fail" in statuses:
        return "fail"
    if "pass" in statuses:
        return "pass"
    return "skipped"


def scenario_results(scenarios: list[Scenario], bindings: Bindings, outcomes: list[Outcome]) -> list[ScenarioResult]:
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
            tests = list(by_name.get("test_" + python_name(s.name), []))
            by_name_only = bool(tests)
        results.append(ScenarioResult(s, _status(tests), tests, by_name_only))
    return results
