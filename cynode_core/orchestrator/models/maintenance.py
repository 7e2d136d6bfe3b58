"""What the orchestrators' own upkeep keeps: task counts by status, and whose turn the retention sweep is."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, Text
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base


class TaskStatusCount(Base):
    """Task counts by status, kept by triggers on ``tasks`` so ``/metrics`` never counts the table.

    Every statement that changes how many tasks have a status appends one row
    per status it changed, with the difference (``+3``, ``-1``); appending
    takes no lock another writer waits on. The count of a status is the sum
    of its rows. The retention sweep folds the rows into one per status
    (``services/retention.fold_task_counts``), so the table holds about one
    row per status plus the changes since the last sweep.
    """

    __tablename__ = "task_status_counts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    n: Mapped[int] = mapped_column(BigInteger)


class MaintenanceRun(Base):
    """When a periodic job of the orchestrators last started (``name``: ``retention``, ``artifact-orphans``).

    Orchestrators sharing a database take turns through this row: the one
    whose update moves ``ran_at`` forward runs the job for that interval.
    """

    __tablename__ = "maintenance_runs"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
