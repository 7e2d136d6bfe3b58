"""Files only their owner may read: secrets, credentials, generated passwords."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable by the owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
