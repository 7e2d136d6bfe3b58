"""The built-in ``local-accounts`` plugin: argon2id passwords in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from cynode_core import hookimpl
from cynode_core.contract import Identity
from cynode_core.orchestrator.models import PasswordCredential, User
from cynode_core.orchestrator.services.passwords import verify_password

PLUGIN_NAME = "local-accounts"


class LocalAccounts:
    """Vouches for active users whose stored hash matches; defers otherwise."""

    def __init__(self, sessions: Callable[[], Session]):
        self._sessions = sessions

    @hookimpl
    def cynode_authenticate(self, handle: str, password: str) -> Identity | None:
        with self._sessions() as session:
            row = session.execute(
                select(User.id, User.is_active, PasswordCredential.password_hash)
                .outerjoin(PasswordCredential, PasswordCredential.user_id == User.id)
                .where(User.handle == handle)
            ).first()
        stored = row.password_hash if row is not None else None
        # Always verify (against a dummy hash when needed) so timing tells nothing.
        ok = verify_password(stored, password)
        if row is None or not ok or not row.is_active:
            return None
        return Identity(handle=handle, user_id=str(row.id))
