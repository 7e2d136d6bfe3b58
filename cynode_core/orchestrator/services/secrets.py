"""Secrets that must exist: generated once, stored mode 0600 under CYNODE_HOME.

No default secret is ever used. A configured value wins; otherwise the
stored file is read; otherwise a new random value is written.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from cynode_core.private_files import write_private

JWT_SECRET_FILE = "jwt-secret"
NODE_PSK_FILE = "node-psk"
ADMIN_PASSWORD_FILE = "admin-password"
TOKEN_KEY_FILE = "token-encryption.key"


def stored_or_generated(home: Path, name: str, generate) -> tuple[str, Path, bool]:  # type: ignore[no-untyped-def]
    """The value stored in ``home/name``, creating it with ``generate()`` if missing.

    Returns ``(value, path, created)``. The file is created exclusively so two
    processes starting together agree on one value.
    """
    path = home / name
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if value:
            return value, path, False
        # An empty file (a crash between create and write): replace it.
        value = generate()
        write_private(path, value)
        return value, path, True
    value = generate()
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return value, path, True


@dataclass(frozen=True)
class ResolvedSecrets:
    jwt_secret: str
    node_psk: str
    admin_password: str | None
    admin_password_file: Path | None
    token_key: bytes


def resolve_secrets(
    home: Path, *, jwt_secret: str | None, node_psk: str | None, admin_password: str | None
) -> ResolvedSecrets:
    jwt = jwt_secret or stored_or_generated(home, JWT_SECRET_FILE, lambda: secrets.token_urlsafe(48))[0]
    psk = node_psk or stored_or_generated(home, NODE_PSK_FILE, lambda: secrets.token_urlsafe(32))[0]
    key = stored_or_generated(home, TOKEN_KEY_FILE, lambda: Fernet.generate_key().decode())[0].encode()
    return ResolvedSecrets(jwt, psk, admin_password, None if admin_password else home / ADMIN_PASSWORD_FILE, key)


class TokenCipher:
    """Encrypts node Worker API tokens at rest (Fernet, key under CYNODE_HOME)."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored token cannot be decrypted with this CYNODE_HOME's key") from exc
