"""What a task's jobs printed, in numbered chunks (services/job_output.py writes and reads them)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Text, Uuid, func, text
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


class JobOutputMark(Base):
    """How much of one stream of a job's run on a node the task's log holds: what a repeated piece skips.

    ``chars`` counts the characters of the stream stored so far (a node's
    ``output`` piece names the offset it starts at, so a piece sent again
    after a lost answer adds only what is new); ``cut`` says the cut marker
    was stored. Keyed by node as well: a job taken over by another node runs
    again from its first character.
    """

    __tablename__ = "job_output_marks"
    __table_args__ = (CheckConstraint(f"stream IN ({', '.join(repr(s) for s in OUTPUT_STREAMS)})", name="stream"),)

    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    chars: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    cut: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
