"""The domain exception tree: what went wrong, in words, with no transport attached.

Services, the node's executor and plugins raise these; each HTTP surface
(the orchestrator's gateway and control plane, the node's Worker API) turns
them into problem details in one place of its own
(``cynode_core.http_problems``). Nothing here knows a status code.
"""

from __future__ import annotations

from typing import Any


class CynodeError(Exception):
    """Base of every error cynode raises on purpose.

    ``detail`` is the sentence a client may be shown; ``extra`` holds
    further members of the error (for example ``errors`` per field).
    """

    def __init__(self, detail: str = "", **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(CynodeError):
    """The caller's input is malformed or breaks a rule."""


class NotAuthenticated(CynodeError):
    """No credential, or one that is not (or no longer) valid.

    ``challenge`` names the scheme a client should use, when the surface
    announces one.
    """

    def __init__(self, detail: str = "", *, challenge: str | None = None, **extra: Any):
        super().__init__(detail, **extra)
        self.challenge = challenge


class NotPermitted(CynodeError):
    """The caller is known but may not do this."""


class NotFound(CynodeError):
    """No such thing, or not one the caller may see."""


class Conflict(CynodeError):
    """The request clashes with the current state (a taken name, say)."""


class TooLarge(CynodeError):
    """The input is over its size limit."""


class RangeNotSatisfiable(CynodeError):
    """A byte range outside the content (HTTP 416); ``size`` is the content's length."""

    def __init__(self, size: int, detail: str = "range not satisfiable") -> None:
        super().__init__(detail)
        self.size = size


class RateLimited(CynodeError):
    """The caller must wait ``retry_after`` seconds (at least one) before trying again."""

    def __init__(self, detail: str = "", *, retry_after: float, **extra: Any):
        super().__init__(detail, **extra)
        self.retry_after = max(int(retry_after), 1)


class Unavailable(CynodeError):
    """Something this needs is away or busy; trying again later may work."""

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **extra: Any):
        super().__init__(detail, **extra)
        self.retry_after = None if retry_after is None else max(int(retry_after), 1)


class RuntimeUnavailable(Unavailable):
    """A sandbox runtime cannot run jobs (not installed, not reachable, no image)."""


class InferenceUnavailable(Unavailable):
    """An inference backend cannot start or does not answer."""


class JobNotStarted(CynodeError):
    """A node could not start a job it had accepted (no workspace, no record of its start)."""
