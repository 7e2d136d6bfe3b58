"""Each requirement's state, and the rules that fail the run.

A Phase 1 requirement fails the gate when its scenarios fail and none
passes, when it is not proven and not allowlisted, or when it is proven and
still allowlisted. An allowlist entry for anything but a Phase 1 requirement
fails it too. Phase 1.5 is reported, never gated.
"""

from __future__ import annotations

from dataclasses import dataclass

from .allowlist import AllowlistEntry
from .requirements import GATING_PHASE, REPORTED_PHASES, Requirement, Scope
from .results import ScenarioResult


@dataclass
class ReqResult:
    requirement: Requirement
    scenarios: list[ScenarioResult]
    exception: AllowlistEntry | None

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
    results: dict[str, ReqResult]  # the Phase 1 and 1.5 requirements, by ID in sorted order
    scenario_results: list[ScenarioResult]
    junit_notes: list[str]
    errors: list[str]
    warnings: list[str]
    extra_tags: dict[str, list[ScenarioResult]]  # requirement IDs tagged but outside Phase 1/1.5


def _failing_names(results: list[ScenarioResult]) -> str:
    return "; ".join(f"{s.scenario.feature}: {s.scenario.name}" for s in results)


def _allowlist_errors(reqs: dict[str, Requirement], allowlist: dict[str, AllowlistEntry]) -> list[str]:
    """Entries naming no requirement, or one outside Phase 1."""
    errors = []
    for req_id, entry in sorted(allowlist.items()):
        req = reqs.get(req_id)
        if req is None:
            errors.append(f"allowlist: {req_id} (line {entry.line}) is not a requirement of the scope document")
        elif req.phase != GATING_PHASE:
            errors.append(f"allowlist: {req_id} (line {entry.line}) is phase {req.phase}, only Phase 1 can be listed")
    return errors


def _judge(rr: ReqResult, errors: list[str], warnings: list[str]) -> None:
    """Add what a Phase 1 requirement's state means for the gate to the errors or the warnings."""
    req_id = rr.requirement.req_id
    state = rr.state
    if state == "failing":
        errors.append(f"{req_id}: no scenario proving it passes, and these fail: {_failing_names(rr.failing)}")
    elif state in ("unproven", "not covered") and rr.exception is None:
        what = "its scenarios did not run" if state == "unproven" else "no scenario is tagged with it"
        errors.append(f"{req_id}: not proven ({what}) and not in the allowlist")
    elif state == "proven" and rr.exception is not None:
        errors.append(
            f"{req_id}: proven by {len(rr.passing)} passing scenario(s) but still in the allowlist"
            f" (line {rr.exception.line}); remove it"
        )
    elif state == "proven" and rr.failing:
        warnings.append(f"{req_id}: proven, but these of its scenarios fail: {_failing_names(rr.failing)}")


def evaluate(
    scope: Scope,
    results: list[ScenarioResult],
    allowlist: dict[str, AllowlistEntry],
    allowlist_problems: list[str],
    junit_notes: list[str],
    warnings: list[str],
) -> Report:
    """Join the scenario results to the requirements and apply the gate (``warnings`` is extended)."""
    reqs = scope.requirements
    by_req: dict[str, list[ScenarioResult]] = {}
    for r in results:
        for req_id in r.scenario.req_ids:
            by_req.setdefault(req_id, []).append(r)
    table: dict[str, ReqResult] = {}
    for req in sorted(reqs.values(), key=lambda x: x.req_id):
        if req.phase in REPORTED_PHASES:
            table[req.req_id] = ReqResult(req, by_req.get(req.req_id, []), allowlist.get(req.req_id))
    errors = list(allowlist_problems) + _allowlist_errors(reqs, allowlist)
    for rr in table.values():
        if rr.requirement.phase == GATING_PHASE:
            _judge(rr, errors, warnings)
    extra = {req_id: found for req_id, found in sorted(by_req.items()) if req_id not in table}
    return Report(scope, table, results, junit_notes, errors, warnings, extra)
