"""What a task's jobs printed, in numbered chunks (services/job_output.py writes and reads them)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Text, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base

OUTPUT_STREAMS = ("stdout", "stderr")


class JobOutput(Base):
    """One chunk of a job's stdout or stderr: a line, or a piece of a long line.

    ``seq`` counts per task (not per job) from 1, so it orders the whole
    task's output and is the id of its server-sent event. The stored text
    is what the node returned, capped as the job's result is.
    """

    __tablename__ = "job_output"
    __table_args__ = (
        CheckConstraint(f"stream IN ({', '.join(repr(s) for s in OUTPUT_STREAMS)})", name="stream"),
        Index("idx_job_output_job_id", "job_id"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"))
    stream: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
