"""cynode_core/orchestrator/dispatch."""
