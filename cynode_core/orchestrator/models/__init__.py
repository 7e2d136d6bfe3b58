"""Typed SQLAlchemy 2.0 models; importing this package registers every table."""

from cynode_core.orchestrator.models.agents import AgentToken, McpToolCallAudit
from cynode_core.orchestrator.models.artifacts import Artifact, ArtifactBlob, ArtifactBlobChunk, ArtifactReadGrant
from cynode_core.orchestrator.models.auth import (
    ApiKey,
    AuthAuditLog,
    PasswordCredential,
    RateLimitCounter,
    RefreshSession,
    User,
)
from cynode_core.orchestrator.models.chat import ChatAuditLog, ChatMessage, ChatThread
from cynode_core.orchestrator.models.dispatch import DispatchTurn
from cynode_core.orchestrator.models.job_output import JobOutput, JobOutputMark
from cynode_core.orchestrator.models.maintenance import MaintenanceRun, TaskStatusCount
from cynode_core.orchestrator.models.nodes import Node, NodeCapability
from cynode_core.orchestrator.models.tasks import Job, Project, Task, TaskArtifact

__all__ = [
    "AgentToken",
    "ApiKey",
    "Artifact",
    "ArtifactBlob",
    "ArtifactBlobChunk",
    "ArtifactReadGrant",
    "AuthAuditLog",
    "ChatAuditLog",
    "ChatMessage",
    "ChatThread",
    "DispatchTurn",
    "Job",
    "JobOutput",
    "JobOutputMark",
    "MaintenanceRun",
    "McpToolCallAudit",
    "Node",
    "NodeCapability",
    "PasswordCredential",
    "Project",
    "RateLimitCounter",
    "RefreshSession",
    "Task",
    "TaskArtifact",
    "TaskStatusCount",
    "User",
]
