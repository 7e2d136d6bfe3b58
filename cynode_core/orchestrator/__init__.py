"""cynode_core/orchestrator."""
