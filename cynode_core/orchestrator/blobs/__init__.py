"""Blob stores on the orchestrator's side: the built-in PostgreSQL store and the choice among registered stores."""
