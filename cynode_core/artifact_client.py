"""Artifact transfers for the client: uploads and downloads streamed from and to files, checked, with progress.

An upload streams the file as the request body (never read whole) and
reports each piece sent; a download streams the body to a temporary file
next to the target, checks its SHA-256 against the artifact's ``ETag``
(the stored checksum), and only then moves it into place, so a broken or
tampered transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from cynode_core.client import ApiError, GatewayClient

Progress = Callable[[int], None]
CHUNK = 256 * 1024
# A transfer of hundreds of megabytes may take minutes; the gateway answers when the body is stored.
TRANSFER_TIMEOUT = 3600.0


class _Reading:
    """A file as a request body: ``read`` reports each piece, ``__len__`` gives requests its Content-Length."""

    def __init__(self, handle: BinaryIO, size: int, progress: Progress | None) -> None:
        self.handle, self.size, self.progress = handle, size, progress

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        data = self.handle.read(CHUNK if amount is None or amount < 0 else amount)
        if data and self.progress is not None:
            self.progress(len(data))
        return data


def upload(
    client: GatewayClient, source: Path, params: dict[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """``POST /v1/artifacts`` with the file as the body; the created artifact."""
    size = source.stat().st_size
    with source.open("rb") as handle:
        resp = client.request(
            "POST",
            "/v1/artifacts",
            params=params,
            data=_Reading(handle, size, progress),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            timeout=TRANSFER_TIMEOUT,
        )
    created: dict[str, Any] = client._decode(resp)  # noqa: SLF001 - the client's one decoder of answers
    return created


def download(client: GatewayClient, artifact_id: str, target: Path, progress: Progress | None = None) -> str:
    """Stream an artifact into ``target`` (checked against its SHA-256 first); the checksum."""
    resp = client.request("GET", f"/v1/artifacts/{artifact_id}", stream=True, timeout=TRANSFER_TIMEOUT)
    with resp:
        if resp.status_code != 200:
            client._decode(resp)  # noqa: SLF001 - raises the gateway's problem as ApiError
        expected = resp.headers.get("ETag", "").strip('"')
        digest = hashlib.sha256()
        directory = target.resolve().parent
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in resp.iter_content(chunk_size=CHUNK):
                    out.write(piece)
                    digest.update(piece)
                    if progress is not None:
                        progress(len(piece))
            if expected and digest.hexdigest() != expected:
                detail = f"artifact {artifact_id}: got {digest.hexdigest()}, expected {expected}"
                raise ApiError(0, "Checksum mismatch", detail)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return digest.hexdigest()
