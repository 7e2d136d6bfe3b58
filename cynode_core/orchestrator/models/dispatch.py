"""What the dispatcher remembers between claims: when each owner last had a turn."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from cynode_core.orchestrator.db import Base


class DispatchTurn(Base):
    """One row per task owner: when the dispatcher last took one of their jobs.

    ``owner`` is the tasks' ``created_by``, or the nil UUID for tasks without
    one; no foreign key, so that shared row needs no user. Claims order owners
    with as many running jobs by this time (dispatch/fair_order.py). One row
    per user who ever had a job dispatched: the table stays small.
    """

    __tablename__ = "dispatch_turns"

    owner: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    last_turn_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
