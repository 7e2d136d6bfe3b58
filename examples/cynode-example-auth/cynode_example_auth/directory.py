"""The static user directory: parsing, reloading and password checks.

An entry is ``handle hash [email]`` separated by blanks, where ``hash`` is an
argon2id hash in PHC form (``$argon2id$v=19$m=...``; make one with
``python -m cynode_example_auth hash <handle>``). The file holds one entry
a line, with ``#`` comments and blank lines; the environment variable holds
entries separated by ``;`` or newlines. Entries from both are merged and a
handle may appear only once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from cynode_core.contract import Identity

ENV_FILE = "CYNODE_EXAMPLE_AUTH_FILE"
ENV_USERS = "CYNODE_EXAMPLE_AUTH_USERS"
SOURCE = "example-auth"  # Identity.external_source: cynode keys the users row on (source, handle)

_hasher = PasswordHasher()


class DirectoryError(ValueError):
    """The configured users cannot be read; the message names the source and line."""


@dataclass(frozen=True)
class StaticUser:
    handle: str
    password_hash: str
    email: str | None = None


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` in PHC form, for a users file entry."""
    return _hasher.hash(password)


def parse_entries(text: str, *, origin: str, separator: str | None = None) -> list[StaticUser]:
    """The entries of ``text``; ``origin`` names the source in error messages."""
    chunks = text.replace(separator, "\n") if separator else text
    users = []
    for number, raw in enumerate(chunks.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise DirectoryError(f"{origin}, entry {number}: expected 'handle hash [email]', got {len(fields)} fields")
        handle, password_hash = fields[0], fields[1]
        try:
            if extract_parameters(password_hash).type.name != "ID":
                raise InvalidHashError("not argon2id")
        except InvalidHashError as exc:
            raise DirectoryError(f"{origin}, entry {number} ({handle}): not an argon2id hash") from exc
        users.append(StaticUser(handle, password_hash, fields[2] if len(fields) == 3 else None))
    return users


class StaticDirectory:
    """Users from the file and the variable named in ``environ``, re-read when they change."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._cache_key: tuple[object, ...] | None = None
        self._users: dict[str, StaticUser] = {}
        self._dummy_hash: str | None = None

    def configured(self) -> bool:
        return bool(self._environ.get(ENV_FILE) or self._environ.get(ENV_USERS))

    def users(self) -> dict[str, StaticUser]:
        """Every configured user by handle; :class:`DirectoryError` when a source is unreadable or wrong."""
        path, inline = self._environ.get(ENV_FILE) or None, self._environ.get(ENV_USERS) or ""
        try:
            stat = os.stat(path) if path else None
        except OSError as exc:
            raise DirectoryError(f"{ENV_FILE}={path}: {exc.strerror}") from exc
        key = (path, stat and stat.st_mtime_ns, stat and stat.st_size, inline)
        if key != self._cache_key:
            entries = parse_entries(inline, origin=ENV_USERS, separator=";")
            if path:
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise DirectoryError(f"{ENV_FILE}={path}: {exc}") from exc
                entries += parse_entries(text, origin=path)
            users: dict[str, StaticUser] = {}
            for user in entries:
                if user.handle in users:
                    raise DirectoryError(f"handle {user.handle!r} is listed twice")
                users[user.handle] = user
            self._users, self._cache_key = users, key
        return self._users

    def authenticate(self, handle: str, password: str) -> Identity | None:
        """The identity of a listed user whose password matches; ``None`` otherwise."""
        user = self.users().get(handle)
        if user is None:
            # Burn the same time as a real check, so timing does not tell who is listed.
            self._verify(self._dummy(), password)
            return None
        if not self._verify(user.password_hash, password):
            return None
        return Identity(handle=user.handle, email=user.email, external_source=SOURCE, external_id=user.handle)

    @staticmethod
    def _verify(password_hash: str, password: str) -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except VerificationError:
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = hash_password("cynode-example-auth-timing")
        return self._dummy_hash
