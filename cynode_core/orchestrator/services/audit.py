"""Writing the auth audit log."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from cynode_core.orchestrator.models import AuthAuditLog


def record(
    session: Session,
    event_type: str,
    *,
    success: bool,
    user_id: uuid.UUID | None = None,
    subject_handle: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    reason: str | None = None,
) -> None:
    """Add one audit row to ``session`` (committed with the caller's transaction)."""
    session.add(
        AuthAuditLog(
            event_type=event_type,
            success=success,
            user_id=user_id,
            subject_handle=subject_handle[:256] if subject_handle else subject_handle,
            ip_address=ip_address,
            user_agent=user_agent[:512] if user_agent else user_agent,
            reason=reason,
        )
    )
