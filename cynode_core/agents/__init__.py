"""cynode's agents: the project-manager agent's loop, its step schemas and its MCP client (agents_contract.md).

The agents have no database access (import-linter holds it): whatever they
read or change goes through the MCP gateway, under a token bound to one user.
"""
