#!/usr/bin/env python3
"""Requirement traceability: Phase 1 / 1.5 requirements -> scenarios -> test results.

The entry point of the tox env ``trace``: ``python scripts/trace_requirements.py [args]``
(``--help`` lists them). The work is done by the package ``scripts/tracing/``,
whose docstring says what is read, how it is joined and when the run fails.
Needs ``gherkin-official`` (the Gherkin parser pytest-bdd uses).
"""

from __future__ import annotations

import sys

from tracing.cli import main

if __name__ == "__main__":
    sys.exit(main())
