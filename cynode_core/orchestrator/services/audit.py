"""Writing the auth audit log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cynode_core.orchestrator.models import AuthAuditLog
from cynode_core.orchestrator.services import throttle

# A throttle that refuses a flood writes one audit row per key and window, not one per request.
THROTTLED_AUDIT_WINDOW = 60.0


@dataclass(frozen=True)
class ClientInfo:
    """Who sent a request, as the audit log records it."""

    ip: str | None
    user_agent: str | None


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


def record_throttled(
    session: Session, throttle_key: str, event_type: str, client: ClientInfo, *, subject_handle: str | None = None
) -> None:
    """Audit a request refused by the throttle ``throttle_key``: the first refusal of each window only."""
    if throttle.take(session, f"audit:{throttle_key}", limit=1, window=THROTTLED_AUDIT_WINDOW) is None:
        return
    record(
        session,
        event_type,
        success=False,
        subject_handle=subject_handle,
        ip_address=client.ip,
        user_agent=client.user_agent,
        reason="rate limited",
    )
