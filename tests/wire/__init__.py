"""Wire-contract tests: every endpoint answers as recorded in golden/ (see test_wire_golden.py)."""
