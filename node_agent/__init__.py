"""The cynode node agent: Node Manager, Worker API and job executor.

It talks to the orchestrator only over HTTP and never imports the
orchestrator's models, database or API, so it can run on another machine.
"""
