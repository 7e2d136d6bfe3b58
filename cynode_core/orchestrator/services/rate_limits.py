"""Limits of the routes anyone may call, and what failed logins cost (docs/wire_contract.md#login-throttling).

Per client address: login, refresh and node registration attempts per
minute, and failed logins per window. Per account there is no lockout: once
an account has ``login_handle_failures`` failures in the window, an address
that failed on it must wait before its next try, 2 s doubling with every
further failure of the account, up to ``login_slowdown_max``. An address
that has not been failing on the account is not slowed down, so whoever
guesses cannot lock the owner out (OWASP ASVS 2.2.1).

Every refusal is a 429 with ``Retry-After``, audited once per key and
minute (``audit.record_throttled``). The counters are rows of
``rate_limit_counters`` (``services.throttle``), shared by every
orchestrator on the database.
"""

from __future__ import annotations

import hashlib
import math

from sqlalchemy.orm import Session

from cynode_core.contract.errors import RateLimited
from cynode_core.orchestrator.services import audit, throttle
from cynode_core.orchestrator.services.audit import ClientInfo
from cynode_core.orchestrator.settings import OrchestratorSettings

ATTEMPT_WINDOW = 60.0
SLOWDOWN_FIRST = 2.0

LOGIN_ATTEMPTS = "login-ip"
REFRESH_ATTEMPTS = "refresh-ip"
REGISTER_ATTEMPTS = "register-ip"


def _source(client: ClientInfo) -> str:
    return client.ip or "unknown"


def _account(handle: str) -> str:
    """A fixed-length stand-in for a handle in counter keys (a handle may be long or odd)."""
    return hashlib.sha256(handle.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _account_key(handle: str) -> str:
    return f"login-account:{_account(handle)}"


def _pair_prefix(handle: str) -> str:
    return f"login-pair:{_account(handle)}:"


def _pair_key(handle: str, client: ClientInfo) -> str:
    """When ``client``'s address last failed on the account (a :func:`throttle.mark`)."""
    return _pair_prefix(handle) + _source(client)


def _source_failures_key(client: ClientInfo) -> str:
    return f"login-failures-ip:{_source(client)}"


def _refuse(
    session: Session,
    key: str,
    detail: str,
    wait: float,
    event: str,
    client: ClientInfo,
    *,
    subject_handle: str | None = None,
) -> RateLimited:
    audit.record_throttled(session, key, event, client, subject_handle=subject_handle)
    session.commit()
    return RateLimited(detail, retry_after=max(1, math.ceil(wait)))


def count_attempt(session: Session, kind: str, per_minute: int, detail: str, event: str, client: ClientInfo) -> None:
    """Count one attempt of ``kind`` from the client's address; 429 past ``per_minute``."""
    key = f"{kind}:{_source(client)}"
    if throttle.take(session, key, limit=per_minute, window=ATTEMPT_WINDOW) is None:
        wait = throttle.retry_after(session, key, window=ATTEMPT_WINDOW)
        raise _refuse(session, key, detail, wait, event, client)
    session.commit()


def check_login_source(session: Session, settings: OrchestratorSettings, client: ClientInfo) -> None:
    """Before a login's body is read: the address's failed logins, then its attempts (counted)."""
    key = _source_failures_key(client)
    wait = throttle.is_full(session, key, limit=settings.login_source_failures, window=settings.login_handle_window)
    if wait is not None:
        raise _refuse(session, key, "Too many failed logins from this address", wait, "login_failure", client)
    count_attempt(
        session, LOGIN_ATTEMPTS, settings.login_rate_per_minute, "Too many login attempts", "login_failure", client
    )


def slowdown(excess_failures: int, settings: OrchestratorSettings) -> float:
    """The wait after a failure, ``excess_failures`` past the account's threshold."""
    return min(SLOWDOWN_FIRST * 2.0 ** min(excess_failures, 32), settings.login_slowdown_max)


def check_account(session: Session, settings: OrchestratorSettings, handle: str, client: ClientInfo) -> None:
    """Before the password check: 429 when this address failed on ``handle`` too recently."""
    window = settings.login_handle_window
    failures = throttle.count(session, _account_key(handle), window=window)
    if failures < settings.login_handle_failures:
        return
    key = _pair_key(handle, client)
    last = throttle.since(session, key)
    if last is None or last >= window:
        return  # this address has not been failing here: never slowed down
    wait = slowdown(failures - settings.login_handle_failures, settings) - last
    if wait > 0:
        raise _refuse(
            session, key, "Too many failed logins for this user", wait, "login_failure", client, subject_handle=handle
        )


def record_failure(session: Session, settings: OrchestratorSettings, handle: str, client: ClientInfo) -> None:
    """Count a failed login against the account and the address (committed with the caller's audit row)."""
    throttle.bump(session, _account_key(handle), window=settings.login_handle_window)
    throttle.bump(session, _source_failures_key(client), window=settings.login_handle_window)
    throttle.mark(session, _pair_key(handle, client))


def record_success(session: Session, handle: str, client: ClientInfo) -> None:
    """The address logged in: it is no longer one that fails on this account."""
    throttle.clear(session, _pair_key(handle, client))


def unlock(session: Session, handle: str) -> int:
    """Forget the account's failed logins and every address's wait on it; the number of counters removed."""
    return throttle.clear(session, _account_key(handle), prefix=_pair_prefix(handle))
