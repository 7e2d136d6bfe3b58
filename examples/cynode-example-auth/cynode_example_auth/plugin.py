"""The hook implementation the ``cynode`` entry point ``example-auth`` loads.

The module itself is the plugin: pluggy registers it under the entry-point
name and calls :func:`cynode_authenticate` at each login, before cynode's
built-in local accounts.
"""

from __future__ import annotations

import logging

from cynode_core import hookimpl
from cynode_core.contract import Identity
from cynode_example_auth.directory import DirectoryError, StaticDirectory

log = logging.getLogger(__name__)

_directory = StaticDirectory()


@hookimpl
def cynode_authenticate(handle: str, password: str) -> Identity | None:
    """Vouch for a listed user whose password matches; defer (``None``) for anyone else.

    A broken users file fails closed: nobody from this source logs in, the
    error is logged at each attempt, and local accounts keep working.
    """
    if not _directory.configured():
        return None
    try:
        return _directory.authenticate(handle, password)
    except DirectoryError as exc:
        log.error("example-auth: users unreadable, refusing its users: %s", exc)
        return None
