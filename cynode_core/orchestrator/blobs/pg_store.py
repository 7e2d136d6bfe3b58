"""The ``pg`` blob store: blobs in the orchestrator's own PostgreSQL (docs/decisions.md Artifacts 1).

Several orchestrators on one database then serve every artifact with no
other service to run. A blob is a row of ``artifact_blobs`` and its content
in ``artifact_blob_chunks``, 1 MiB per chunk; ``put`` writes it in one
transaction, so a blob is visible complete or not at all (a crash mid-upload
leaves nothing), and never holds more than one chunk in memory; ``open``
reads one chunk per query from the chunk an offset falls in, so a range
costs what it reads. The store has its own small connection pool.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from cynode_core.contract.blobs import BLOB_CHUNK_BYTES, BlobInfo, BlobNotFound, BlobStoreUnavailable, BlobTooLarge
from cynode_core.orchestrator.db import make_engine
from cynode_core.orchestrator.models.artifacts import ArtifactBlob, ArtifactBlobChunk

NAME = "pg"
POOL_SIZE = 4


class PgBlobStore:
    """Blobs as rows of this database; ``engine`` is the store's own."""

    name = NAME

    def __init__(self, engine: Engine, chunk_bytes: int = BLOB_CHUNK_BYTES) -> None:
        self.engine = engine
        self.chunk_bytes = chunk_bytes

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> PgBlobStore:
        url = options.get("database_url")
        if not isinstance(url, str) or not url:
            raise BlobStoreUnavailable("the pg blob store needs the orchestrator's database URL")
        return cls(make_engine(url, pool_size=POOL_SIZE, application_name="cynode-blobs"))

    def put(self, key: str, stream: BinaryIO, *, max_bytes: int) -> BlobInfo:
        digest, size, seq = hashlib.sha256(), 0, 0
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(ArtifactBlob).values(key=key, size_bytes=0, checksum_sha256="", chunk_bytes=self.chunk_bytes)
                )
                for piece in _pieces(stream, self.chunk_bytes):
                    size += len(piece)
                    if size > max_bytes:
                        raise BlobTooLarge(f"the content is larger than {max_bytes} bytes")
                    digest.update(piece)
                    conn.execute(insert(ArtifactBlobChunk).values(blob_key=key, seq=seq, data=piece))
                    seq += 1
                conn.execute(
                    update(ArtifactBlob)
                    .where(ArtifactBlob.key == key)
                    .values(size_bytes=size, checksum_sha256=digest.hexdigest())
                )
        except OperationalError as exc:
            raise BlobStoreUnavailable("the database did not take the blob") from exc
        return BlobInfo(size, digest.hexdigest())

    def open(self, key: str, offset: int = 0) -> Iterator[bytes]:
        try:
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(ArtifactBlob.size_bytes, ArtifactBlob.chunk_bytes).where(ArtifactBlob.key == key)
                ).first()
        except OperationalError as exc:
            raise BlobStoreUnavailable("the database is not reachable") from exc
        if found is None:
            raise BlobNotFound(f"no blob {key}")
        size, chunk_bytes = found
        return self._chunks(key, max(offset, 0), size, chunk_bytes)

    def _chunks(self, key: str, offset: int, size: int, chunk_bytes: int) -> Iterator[bytes]:
        seq, skip = divmod(offset, chunk_bytes)
        while offset < size:
            with self.engine.connect() as conn, _binary_cursor(conn) as cursor:
                # Binary results: the chunk as its bytes, not twice as many hex digits to decode.
                row = cursor.execute(_CHUNK_QUERY, (key, seq)).fetchone()
            if row is None:  # deleted while being read
                return
            piece = bytes(row[0])[skip:] if skip else bytes(row[0])
            yield piece
            offset += len(piece)
            seq, skip = seq + 1, 0

    def delete(self, key: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(ArtifactBlob).where(ArtifactBlob.key == key))
        except OperationalError as exc:
            raise BlobStoreUnavailable("the database is not reachable") from exc

    def keys_before(self, moment: dt.datetime) -> Iterator[str]:
        with self.engine.connect() as conn:
            keys = conn.execute(select(ArtifactBlob.key).where(ArtifactBlob.created_at < moment)).scalars().all()
        return iter(keys)

    def check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise BlobStoreUnavailable("the database is not reachable") from exc

    def close(self) -> None:
        self.engine.dispose()


_CHUNK_QUERY = "SELECT data FROM artifact_blob_chunks WHERE blob_key = %s AND seq = %s"


def _binary_cursor(conn: Connection) -> Any:
    """A psycopg cursor on ``conn``'s own DBAPI connection that asks for results in binary format."""
    return conn.connection.driver_connection.cursor(binary=True)  # type: ignore[union-attr]


def _pieces(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """``stream``'s content in pieces of exactly ``size`` bytes (the last one shorter), one in memory at a time."""
    buffer = bytearray()
    while True:
        data = stream.read(size - len(buffer))
        if not data:
            break
        buffer += data
        if len(buffer) == size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)
