"""Artifacts: stored files with a scope, their read grants, and the PostgreSQL blob store's tables.

``artifacts`` and ``artifact_read_grants`` are artifacts_contract.md 2.1 and
2.2. A row names the blob store that holds its content (``storage_backend``)
and the key there (``storage_ref``). The default store keeps blobs in this
database (``artifact_blobs``, one row per blob, and ``artifact_blob_chunks``,
its content in chunks of at most 1 MiB), so several orchestrators on one
database serve every artifact with no other service (docs/decisions.md
Artifacts 1).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base, new_id
from cynode_core.orchestrator.models.auth import TimestampMixin

SCOPE_LEVELS = ("user", "group", "project", "global")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class Artifact(TimestampMixin, Base):
    """One stored file: where it belongs (scope and partition), where its bytes are, what they are."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("scope_partition", "path", name="uix_orch_art_scope_path"),
        CheckConstraint("scope_level IN ('user', 'group', 'project', 'global')", name="scope_level"),
        CheckConstraint(
            "(scope_level = 'user' AND owner_user_id IS NOT NULL) OR (scope_level = 'project' AND project_id IS NOT "
            "NULL) OR (scope_level = 'group' AND group_id IS NOT NULL) OR scope_level = 'global'",
            name="scope_anchor",
        ),
        CheckConstraint("size_bytes >= 0", name="size_bytes"),
        Index("idx_artifacts_project_id", "project_id"),
        Index("idx_artifacts_group_id", "group_id"),
        Index("idx_artifacts_owner_user_id", "owner_user_id"),
        Index("idx_artifacts_created_by_job_id", "created_by_job_id"),
        Index("idx_artifacts_correlation_task_id", "correlation_task_id"),
        Index("idx_artifacts_partition_created", "scope_partition", text("created_at DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    scope_level: Mapped[str] = mapped_column(Text)
    scope_partition: Mapped[str] = mapped_column(Text)
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    group_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("projects.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    storage_backend: Mapped[str] = mapped_column(Text)
    storage_ref: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(Text, server_default=text(f"'{DEFAULT_CONTENT_TYPE}'"))
    checksum_sha256: Mapped[str] = mapped_column(Text)
    created_by_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="SET NULL"))
    last_modified_by_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="SET NULL"))
    correlation_task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="SET NULL"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class ArtifactReadGrant(Base):
    """A user who may read someone's user-scoped artifact (read only)."""

    __tablename__ = "artifact_read_grants"
    __table_args__ = (UniqueConstraint("artifact_id", "grantee_user_id", name="idx_artifact_read_grant_pair"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    artifact_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("artifacts.id", ondelete="CASCADE"))
    grantee_user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ArtifactBlob(Base):
    """A blob of the PostgreSQL store: its key, size and SHA-256; the content is in its chunks."""

    __tablename__ = "artifact_blobs"
    __table_args__ = (Index("idx_artifact_blobs_created_at", "created_at"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str] = mapped_column(Text)
    # Every chunk but the last holds exactly this many bytes, so an offset names its chunk.
    chunk_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ArtifactBlobChunk(Base):
    """One piece of a blob, in order (``seq`` from 0); at most 1 MiB each."""

    __tablename__ = "artifact_blob_chunks"

    blob_key: Mapped[str] = mapped_column(
        Text, ForeignKey("artifact_blobs.key", ondelete="CASCADE", onupdate="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
