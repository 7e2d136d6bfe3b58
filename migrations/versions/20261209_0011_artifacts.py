"""artifacts: stored files with a scope, their read grants, and the PostgreSQL blob store

``artifacts`` and ``artifact_read_grants`` as artifacts_contract.md 2.1 and
2.2. ``artifact_blobs`` and ``artifact_blob_chunks`` hold the content of the
default ``pg`` blob store (docs/decisions.md Artifacts 1): one row per blob,
its bytes in chunks of 1 MiB.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09 08:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope_level", sa.Text(), nullable=False),
        sa.Column("scope_partition", sa.Text(), nullable=False),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("storage_backend", sa.Text(), nullable=False),
        sa.Column("storage_ref", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.Text(), server_default=sa.text("'application/octet-stream'"), nullable=False),
        sa.Column("checksum_sha256", sa.Text(), nullable=False),
        sa.Column("created_by_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_modified_by_job_id", sa.Uuid(), nullable=True),
        sa.Column("correlation_task_id", sa.Uuid(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "scope_level IN ('user', 'group', 'project', 'global')", name=op.f("ck_artifacts_scope_level")
        ),
        sa.CheckConstraint(
            "(scope_level = 'user' AND owner_user_id IS NOT NULL) OR (scope_level = 'project' AND project_id IS NOT "
            "NULL) OR (scope_level = 'group' AND group_id IS NOT NULL) OR scope_level = 'global'",
            name=op.f("ck_artifacts_scope_anchor"),
        ),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_artifacts_size_bytes")),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name=op.f("fk_artifacts_owner_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_artifacts_project_id_projects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_job_id"], ["jobs.id"], name=op.f("fk_artifacts_created_by_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["last_modified_by_job_id"],
            ["jobs.id"],
            name=op.f("fk_artifacts_last_modified_by_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["correlation_task_id"],
            ["tasks.id"],
            name=op.f("fk_artifacts_correlation_task_id_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("scope_partition", "path", name="uix_orch_art_scope_path"),
    )
    for column in ("project_id", "group_id", "owner_user_id", "created_by_job_id", "correlation_task_id"):
        op.create_index(f"idx_artifacts_{column}", "artifacts", [column])
    op.create_index("idx_artifacts_partition_created", "artifacts", ["scope_partition", sa.text("created_at DESC")])
    op.create_table(
        "artifact_read_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("artifact_id", sa.Uuid(), nullable=False),
        sa.Column("grantee_user_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifact_read_grants_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["grantee_user_id"],
            ["users.id"],
            name=op.f("fk_artifact_read_grants_grantee_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_artifact_read_grants_created_by_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_read_grants")),
        sa.UniqueConstraint("artifact_id", "grantee_user_id", name="idx_artifact_read_grant_pair"),
    )
    op.create_table(
        "artifact_blobs",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum_sha256", sa.Text(), nullable=False),
        sa.Column("chunk_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_artifact_blobs")),
    )
    op.create_index("idx_artifact_blobs_created_at", "artifact_blobs", ["created_at"])
    op.create_table(
        "artifact_blob_chunks",
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_key"],
            ["artifact_blobs.key"],
            name=op.f("fk_artifact_blob_chunks_blob_key_artifact_blobs"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("blob_key", "seq", name=op.f("pk_artifact_blob_chunks")),
    )


def downgrade() -> None:
    op.drop_table("artifact_blob_chunks")
    op.drop_table("artifact_blobs")
    op.drop_table("artifact_read_grants")
    op.drop_table("artifacts")
