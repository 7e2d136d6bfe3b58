"""Requirement traceability: Phase 1 / 1.5 requirements -> scenarios -> test results.

Reads three things and joins them:

1. The requirement list with each requirement's phase, from the project's
   scope document (``<repo>/../shared/spec/requirements_scope.md``, or
   ``--scope PATH``). When that file is absent (a clone without ``shared/``
   beside it), the checked-in snapshot ``docs/requirements_scope_ids.txt`` is
   used instead; ``--snapshot`` regenerates the snapshot from the document.
2. The ``@REQ-*`` tags of every scenario in ``features/**/*.feature``
   (Scenario and Scenario Outline; Feature-, Rule- and Examples-level tags
   apply to the scenarios below them), read with the official Gherkin parser
   (``gherkin-official``, the one pytest-bdd uses).
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

The modules, in the order the command line uses them:

- ``requirements``: the requirement catalogue (scope document or snapshot)
- ``features``: scenarios and their tags from the ``.feature`` files
- ``bindings``: which test module runs which scenario, under which test name
- ``junit``: test outcomes from pytest's JUnit XML
- ``results``: each scenario's status from the outcomes of its tests
- ``allowlist``: ``docs/trace_exceptions.txt``
- ``gate``: each requirement's state and the rules that fail the run
- ``report``: the Markdown report and the printed summary
- ``cli``: the command line (``scripts/trace_requirements.py`` calls it)
"""


class TraceError(Exception):
    """Bad input: the tracer cannot produce a report (exit status 2)."""
