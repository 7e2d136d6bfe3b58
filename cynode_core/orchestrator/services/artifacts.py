"""Artifacts: create, read, replace, delete, list, and the sweep of blobs no row points at (artifacts_contract.md 3).

Content goes to a blob store under a key written once,
``artifacts/<artifact id>/<random>``, and only then does a row point at it:
a crash mid-upload leaves no half-visible artifact (at worst a blob without
a row, which :func:`sweep_orphans` removes), and a replacement switches the
row to its new blob in one commit before the old blob is deleted. Bodies
are streamed to the store (the store hashes while writing), never held
whole. The size limit and the owner's quota are checked while streaming and
again, under a per-owner lock, when the row is written.

Errors are the contract's domain errors: ``NotFound`` ("artifact not
found", also for an artifact the caller may not read), ``NotPermitted``
("access denied"), ``Conflict`` (a path taken), ``TooLarge`` (size or
quota), ``InvalidInput``; a store that cannot be used is
``BlobStoreUnavailable`` (503).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cynode_core.contract.blobs import BlobInfo, BlobStore, BlobTooLarge
from cynode_core.contract.errors import Conflict, InvalidInput, NotFound, NotPermitted, TooLarge
from cynode_core.orchestrator.blobs.stores import BlobStores
from cynode_core.orchestrator.db import Database
from cynode_core.orchestrator.models import Job, Task
from cynode_core.orchestrator.models.artifacts import DEFAULT_CONTENT_TYPE, Artifact
from cynode_core.orchestrator.services.artifact_access import Actor, Scope, may_read, may_write
from cynode_core.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)

NOT_FOUND = "artifact not found"
ACCESS_DENIED = "access denied"
PATH_TAKEN = "artifact already exists at path"
# A blob without a row younger than this may be an upload whose row is being written.
ORPHAN_GRACE = dt.timedelta(hours=1)
MAX_CONTENT_TYPE = 255


@dataclass(frozen=True)
class Upload:
    """A body to store: its stream and the content type it came with."""

    stream: BinaryIO
    content_type: str | None = None


@dataclass(frozen=True)
class Lineage:
    """The job and task an artifact came from or belongs with (checked to be the actor's)."""

    job_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ListFilters:
    """What a listing narrows to, and its window."""

    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    limit: int = 50
    offset: int = 0


@dataclass
class Artifacts:
    """The artifact operations of one orchestrator process."""

    db: Database
    stores: BlobStores
    settings: OrchestratorSettings

    # -- create and replace ------------------------------------------------------------------

    def create(self, actor: Actor, scope: Scope, path: str, upload: Upload, lineage: Lineage = Lineage()) -> Artifact:
        """A new artifact at (scope, path); ``Conflict`` when the path is taken."""
        owner = scope.owner_user_id if scope.level == "user" else actor.user_id
        assert owner is not None
        with self.db.session() as session:
            if not may_write(session, actor, scope):
                raise NotPermitted(ACCESS_DENIED)
            _check_lineage(session, actor, lineage)
            if at_path(session, scope, path) is not None:
                raise Conflict(PATH_TAKEN)
            room = self.settings.artifact_quota_bytes - _owned_bytes(session, owner)
        artifact_id = uuid.uuid4()
        store, key, info = self._put(artifact_id, upload, room)
        row = Artifact(
            id=artifact_id,
            scope_level=scope.level,
            scope_partition=scope.partition,
            owner_user_id=owner,
            group_id=scope.group_id,
            project_id=scope.project_id,
            path=path,
            storage_backend=store.name,
            storage_ref=key,
            size_bytes=info.size_bytes,
            content_type=_content_type(upload.content_type),
            checksum_sha256=info.sha256,
            created_by_job_id=lineage.job_id,
            last_modified_by_job_id=lineage.job_id,
            correlation_task_id=lineage.task_id,
            run_id=lineage.run_id,
        )
        try:
            with self.db.session() as session:
                self._within_quota(session, owner, info.size_bytes)
                session.add(row)
                session.flush()
                session.refresh(row)  # its timestamps, written by the database
        except IntegrityError:
            store.delete(key)
            raise Conflict(PATH_TAKEN) from None
        except BaseException:
            store.delete(key)
            raise
        return row

    def replace(
        self, actor: Actor, artifact_id: uuid.UUID, upload: Upload, job_id: uuid.UUID | None = None
    ) -> Artifact:
        """New content for an artifact; the row switches to it in one commit, then the old blob goes."""
        with self.db.session() as session:
            row = self._writable(session, actor, artifact_id)
            _check_lineage(session, actor, Lineage(job_id=job_id))
            assert row.owner_user_id is not None
            owner = row.owner_user_id
            room = self.settings.artifact_quota_bytes - _owned_bytes(session, owner) + row.size_bytes
        store, key, info = self._put(artifact_id, upload, room)
        try:
            with self.db.session() as session:
                row = self._writable(session, actor, artifact_id, lock=True)
                self._within_quota(session, owner, info.size_bytes - row.size_bytes)
                old_store, old_key = row.storage_backend, row.storage_ref
                row.storage_backend, row.storage_ref = store.name, key
                row.size_bytes, row.checksum_sha256 = info.size_bytes, info.sha256
                if upload.content_type:
                    row.content_type = _content_type(upload.content_type)
                if job_id is not None:
                    row.last_modified_by_job_id = job_id
                row.updated_at = dt.datetime.now(dt.UTC)
        except BaseException:
            store.delete(key)
            raise
        self._delete_blob(old_store, old_key)
        return row

    def _put(self, artifact_id: uuid.UUID, upload: Upload, room: int) -> tuple[BlobStore, str, BlobInfo]:
        limit = self.settings.artifact_max_bytes
        if room <= 0:
            raise TooLarge(f"artifact quota reached: {self.settings.artifact_quota_bytes} bytes per user")
        store = self.stores.for_writing()
        key = f"artifacts/{artifact_id}/{uuid.uuid4().hex}"
        try:
            info = store.put(key, upload.stream, max_bytes=min(limit, room))
        except BlobTooLarge:
            if room < limit:
                raise TooLarge(f"artifact quota reached: {self.settings.artifact_quota_bytes} bytes per user") from None
            raise TooLarge(f"artifact larger than {limit} bytes") from None
        return store, key, info

    def _within_quota(self, session: Session, owner: uuid.UUID, added: int) -> None:
        """Refuse ``added`` bytes past the owner's quota; the owner's writes are serialized from here to commit."""
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"artifact-quota:{owner}"})
        if added > 0 and _owned_bytes(session, owner) + added > self.settings.artifact_quota_bytes:
            raise TooLarge(f"artifact quota reached: {self.settings.artifact_quota_bytes} bytes per user")

    # -- read, delete, list ----------------------------------------------------------------------

    def get(self, actor: Actor, artifact_id: uuid.UUID) -> Artifact:
        """The artifact's row, when the actor may read it (else ``NotFound``, whether or not it exists)."""
        with self.db.session() as session:
            row = session.get(Artifact, artifact_id)
            if row is None or not may_read(session, actor, row):
                raise NotFound(NOT_FOUND)
            return row

    def content(self, row: Artifact, offset: int = 0) -> Iterator[bytes]:
        """The artifact's bytes from ``offset``, from the store that holds them."""
        return self.stores.named(row.storage_backend).open(row.storage_ref, offset)

    def delete(self, actor: Actor, artifact_id: uuid.UUID) -> None:
        with self.db.session() as session:
            row = self._writable(session, actor, artifact_id, lock=True)
            store_name, key = row.storage_backend, row.storage_ref
            session.delete(row)
        self._delete_blob(store_name, key)

    def list(self, session: Session, scope: Scope, filters: ListFilters) -> list[Artifact]:
        """A partition's artifacts, newest first (the caller checked ``may_list``)."""
        query = select(Artifact).where(Artifact.scope_partition == scope.partition)
        if filters.task_id is not None:
            query = query.where(Artifact.correlation_task_id == filters.task_id)
        if filters.job_id is not None:
            query = query.where(Artifact.created_by_job_id == filters.job_id)
        query = query.order_by(Artifact.created_at.desc(), Artifact.id).limit(filters.limit).offset(filters.offset)
        return list(session.scalars(query))

    def _writable(self, session: Session, actor: Actor, artifact_id: uuid.UUID, *, lock: bool = False) -> Artifact:
        query = select(Artifact).where(Artifact.id == artifact_id)
        row = session.scalars(query.with_for_update() if lock else query).first()
        if row is None or not may_read(session, actor, row):
            raise NotFound(NOT_FOUND)
        if not may_write(session, actor, Scope.of(row)):
            raise NotPermitted(ACCESS_DENIED)
        return row

    def _delete_blob(self, store_name: str, key: str) -> None:
        try:
            self.stores.named(store_name).delete(key)
        except Exception:  # noqa: BLE001 - the row is gone; the orphan sweep removes the blob later
            log.exception("artifact blob %s in store %s could not be deleted; the sweep will", key, store_name)

    # -- the sweep --------------------------------------------------------------------------------

    def sweep_orphans(self, now: dt.datetime | None = None) -> int:
        """Delete blobs of the current store written over an hour ago that no artifact points at; how many."""
        store = self.stores.for_writing()
        moment = (now or dt.datetime.now(dt.UTC)) - ORPHAN_GRACE
        removed = 0
        for key in store.keys_before(moment):
            with self.db.session() as session:
                used = session.scalar(
                    select(Artifact.id).where(Artifact.storage_backend == store.name, Artifact.storage_ref == key)
                )
            if used is None:
                store.delete(key)
                removed += 1
        return removed


def at_path(session: Session, scope: Scope, path: str) -> Artifact | None:
    """The artifact at (scope, path), whoever may see it (the caller checks access)."""
    found = select(Artifact).where(Artifact.scope_partition == scope.partition, Artifact.path == path)
    return session.scalars(found).first()


def _owned_bytes(session: Session, owner: uuid.UUID) -> int:
    return int(
        session.scalar(select(func.coalesce(func.sum(Artifact.size_bytes), 0)).where(Artifact.owner_user_id == owner))
        or 0
    )


def _check_lineage(session: Session, actor: Actor, lineage: Lineage) -> None:
    """A ``job_id`` must be a job of one of the actor's tasks and a ``task_id`` one of their tasks (admin: any)."""
    if lineage.task_id is not None:
        creator = session.scalar(select(Task.created_by).where(Task.id == lineage.task_id))
        if creator is None or (creator != actor.user_id and not actor.admin):
            raise InvalidInput("invalid task_id")
    if lineage.job_id is not None:
        creator = session.scalar(
            select(Task.created_by).join(Job, Job.task_id == Task.id).where(Job.id == lineage.job_id)
        )
        if creator is None or (creator != actor.user_id and not actor.admin):
            raise InvalidInput("invalid job_id")


def _content_type(value: str | None) -> str:
    kind = (value or "").split(",")[0].strip()
    if not kind or len(kind) > MAX_CONTENT_TYPE or not kind.isascii() or not kind.isprintable():
        return DEFAULT_CONTENT_TYPE
    return kind
