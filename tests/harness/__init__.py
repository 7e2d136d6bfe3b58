"""What the tests are built from, one module each (``tests`` is on the path: ``from harness.api import ApiClient``).

- ``processes``: real ``cynode`` child processes (any command, an orchestrator, a node agent) and the
  bounded waits around them.
- ``api``: :class:`~harness.api.ApiClient`, the one HTTP client of the gateway and the control plane
  (the product's ``GatewayClient``), over loopback or straight into an app in this process.
- ``orchestrator``: the orchestrator opened in this process (settings, runtime, app), served on
  loopback, its dispatcher threads, its users and the database reads the assertions make.
- ``nodes``: a node played by the test against the control plane (register, fetch config, ack).
- ``worker``: a real Worker API on loopback over a scripted sandbox runtime, recording every call.
- ``postgres``: the PostgreSQL server of a test session.
- ``loopback``: a standard-library HTTP server on a loopback port for a peer the test plays, a TCP
  listener that counts the connections it gets, and a TCP proxy that resets connections on demand.
"""
