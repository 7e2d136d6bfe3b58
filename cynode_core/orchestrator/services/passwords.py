"""argon2id password hashes in the PHC string format (m=65536, t=3, p=2)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASH_ALG = "argon2id"

_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=2, hash_len=32, salt_len=16)
# Verified against when the user does not exist, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash("cynode-timing-equaliser")


def hash_password(password: str) -> bytes:
    return _hasher.hash(password).encode("ascii")


def verify_password(stored: bytes | None, password: str) -> bool:
    """Constant-time check; ``stored=None`` burns the same time and fails."""
    try:
        if stored is None:
            _hasher.verify(_DUMMY_HASH, password)
            return False
        return _hasher.verify(stored.decode("ascii"), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeDecodeError):
        return False
