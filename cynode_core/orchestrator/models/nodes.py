"""Worker nodes and their capability snapshots."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, Text, Uuid, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base, new_id
from cynode_core.orchestrator.models.auth import TimestampMixin

NODE_STATUSES = ("registered", "active", "inactive", "drained")


class Node(TimestampMixin, Base):
    """A registered node. ``worker_api_bearer_token`` holds ciphertext (see services/secrets)."""

    __tablename__ = "nodes"
    __table_args__ = (
        Index("idx_nodes_status", "status"),
        Index("idx_nodes_last_seen_at", "last_seen_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    node_slug: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(Text, server_default=text("'registered'"), default="registered")
    capability_hash: Mapped[str | None] = mapped_column(Text)
    config_version: Mapped[str | None] = mapped_column(Text)
    worker_api_target_url: Mapped[str | None] = mapped_column(Text)
    worker_api_url_override: Mapped[str | None] = mapped_column(Text)
    worker_api_bearer_token: Mapped[str | None] = mapped_column(Text)
    # The ``jti`` of the node JWT of the latest registration; older node JWTs are refused.
    node_jwt_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    config_ack_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    config_ack_status: Mapped[str | None] = mapped_column(Text)
    config_ack_error: Mapped[str | None] = mapped_column(Text)
    config_ack_version: Mapped[str | None] = mapped_column(Text)
    max_concurrency: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    # Its jobs in 'running', kept by triggers on jobs (migration 0012); the claim reads it under the row's lock.
    running_jobs: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_capability_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)


class NodeCapability(Base):
    """Append-only: one row per registration or capability report."""

    __tablename__ = "node_capabilities"
    __table_args__ = (
        Index("idx_node_capabilities_node_reported", "node_id", "reported_at"),
        Index("idx_node_capabilities_reported_at", "reported_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    node_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("nodes.id", ondelete="CASCADE"))
    reported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    capability_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
