"""Typed SQLAlchemy 2.0 models; importing this package registers every table."""

from cynode_core.models.auth import AuthAuditLog, PasswordCredential, RateLimitCounter, RefreshSession, User
from cynode_core.models.nodes import Node, NodeCapability
from cynode_core.models.tasks import Job, Project, Task, TaskArtifact

__all__ = [
    "AuthAuditLog",
    "Job",
    "Node",
    "NodeCapability",
    "PasswordCredential",
    "Project",
    "RateLimitCounter",
    "RefreshSession",
    "Task",
    "TaskArtifact",
    "User",
]
