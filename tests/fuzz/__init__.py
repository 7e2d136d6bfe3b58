"""Property-based fuzzing of every HTTP surface (issue 11, item 9): no client input gets a 5xx.

- ``test_hostile_bodies``: Hypothesis drives every JSON field of every body-taking endpoint (gateway,
  control plane, Worker API) with hostile values (``hostile.py``).
- ``test_stateful_api``: schemathesis over the whole OpenAPI document, stateful along links, as admin.
- ``test_answer_time``: answers to 4x larger hostile bodies take well under 16x longer (no quadratic work).
- ``test_body_limits``: the servers stop reading a body past the cap (waitress's own limit), on a real
  ``cynode orchestrator serve`` process and on the Worker API's server.

Run by ``tox -e fuzz`` (not by the py311 envs); each Hypothesis test is derandomized, so a run is repeatable.
"""
