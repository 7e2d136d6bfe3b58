"""``/v1/artifacts*``: upload, download (with ranges), replace, delete and list stored files (artifacts_contract.md 3).

A body is the file itself (``Content-Type`` its type) or ``multipart/form-data``
with one ``file`` part; either is streamed to the blob store, never read
whole into memory, up to ``CYNODE_ARTIFACT_MAX_BYTES`` (413 beyond) and the
owner's quota. A download streams from the store, answers ``Range`` with 206
(one range) and ``If-None-Match`` with 304. An artifact the caller may not
read is 404, as if it did not exist; one they may read but not change is
403 on PUT and DELETE. Access rules: ``services/artifact_access.py``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote

from flask import Response, current_app, request
from flask.views import MethodView
from marshmallow import fields, validate

from cynode_core.contract.errors import InvalidInput, NotFound, NotPermitted, RangeNotSatisfiable
from cynode_core.orchestrator.api import Blueprint
from cynode_core.orchestrator.api.schemas_common import (
    OmitEmptySchema,
    PageQuerySchema,
    RequestSchema,
    Timestamp,
    int_param,
)
from cynode_core.orchestrator.api.tokens import current_user
from cynode_core.orchestrator.models.artifacts import SCOPE_LEVELS, Artifact
from cynode_core.orchestrator.services import artifact_grants
from cynode_core.orchestrator.services.artifact_access import Actor, Scope, clean_path, make_scope, may_list
from cynode_core.orchestrator.services.artifacts import Artifacts, Lineage, ListFilters, Upload

blp = Blueprint(
    "artifacts", __name__, url_prefix="/v1/artifacts", description="Stored files: upload, download, list, share"
)

_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}
_BINARY = {"type": "string", "format": "binary"}
MAX_OFFSET = 2**31 - 1
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _uuid_field(description: str) -> fields.UUID:
    return fields.UUID(load_default=None, metadata={"description": description})


class CreateQuerySchema(RequestSchema):
    scope_level = fields.String(load_default=None, validate=validate.OneOf(SCOPE_LEVELS), metadata={"example": "user"})
    owner_user_id = _uuid_field("`user` scope: the owner (default the caller; only the caller)")
    project_id = _uuid_field("`project` scope: the project")
    group_id = _uuid_field("`group` scope: the group")
    path = fields.String(load_default=None, metadata={"description": "logical path; else `filename`, `X-Filename`"})
    filename = fields.String(load_default=None)
    job_id = _uuid_field("the job that made it (one of the caller's)")
    task_id = _uuid_field("the task it belongs with (one of the caller's)")
    run_id = _uuid_field("reserved")


class ReplaceQuerySchema(RequestSchema):
    job_id = _uuid_field("the job that changed it (one of the caller's)")


class ListQuerySchema(PageQuerySchema):
    scope_level = fields.String(load_default=None, validate=validate.OneOf(SCOPE_LEVELS))
    user_id = _uuid_field("`user` scope: whose (default the caller)")
    owner_user_id = _uuid_field("same as `user_id`")
    project_id = _uuid_field("`project` scope")
    group_id = _uuid_field("`group` scope")
    correlation_task_id = _uuid_field("only the artifacts of this task")
    job_id = _uuid_field("only those this job made")


class ArtifactSchema(OmitEmptySchema):
    artifact_id = fields.UUID(required=True)
    scope_level = fields.String(required=True)
    path = fields.String(required=True)
    size_bytes = fields.Integer(required=True)
    content_type = fields.String(required=True)
    checksum_sha256 = fields.String(required=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp()
    correlation_task_id = fields.UUID()
    created_by_job_id = fields.UUID()


class ArtifactListSchema(OmitEmptySchema):
    artifacts = fields.List(fields.Nested(ArtifactSchema), required=True)
    next_offset = fields.Integer()
    next_cursor = fields.String()


class GrantSchema(OmitEmptySchema):
    user_id = fields.UUID(required=True)
    created_at = Timestamp(required=True)


class GrantListSchema(OmitEmptySchema):
    grants = fields.List(fields.Nested(GrantSchema), required=True)


def _service() -> Artifacts:
    service: Artifacts = current_app.extensions["cynode"].artifacts
    return service


def _actor() -> Actor:
    user = current_user()
    return Actor(user.id, admin=user.is_admin)


def _scope(query: dict[str, Any], actor: Actor, owner: uuid.UUID | None) -> Scope:
    """The scope a query names: its level and, for that level, the owner, project or group."""
    return make_scope(
        query.get("scope_level"),
        actor,
        owner_user_id=owner,
        project_id=query.get("project_id"),
        group_id=query.get("group_id"),
    )


def _artifact_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput("invalid artifact id") from None


def _upload() -> Upload:
    """The request's file: the raw body, or the one ``file`` part of a multipart form."""
    request.max_content_length = current_app.extensions["cynode"].settings.artifact_max_bytes
    if request.mimetype == "multipart/form-data":
        parts = request.files.getlist("file")
        if len(parts) != 1 or len(request.files) != 1:
            raise InvalidInput("a multipart body must hold exactly one file part named file")
        part = parts[0]
        return Upload(part.stream, part.mimetype or None)  # type: ignore[arg-type]
    return Upload(request.stream, request.headers.get("Content-Type"))  # type: ignore[arg-type]


def _filename() -> str | None:
    if request.mimetype == "multipart/form-data" and "file" in request.files:
        return request.files["file"].filename
    return None


def view(row: Artifact) -> dict[str, Any]:
    return {
        "artifact_id": row.id,
        "scope_level": row.scope_level,
        "path": row.path,
        "size_bytes": row.size_bytes,
        "content_type": row.content_type,
        "checksum_sha256": row.checksum_sha256,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "correlation_task_id": row.correlation_task_id,
        "created_by_job_id": row.created_by_job_id,
    }


@blp.route("")
class ArtifactCollection(MethodView):
    @blp.operation(
        201,
        ArtifactSchema,
        errors={
            400: "A missing or bad scope, path or id",
            403: "The caller may not write in that scope",
            409: "An artifact exists at that path",
            413: "Larger than the upload limit, or past the owner's quota",
            503: "The blob store cannot be used now",
        },
        bearer="user",
    )
    @blp.arguments(CreateQuerySchema, location="query")
    @blp.doc(requestBody=_BODY)
    def post(self, query: dict[str, Any]) -> Any:
        """Upload a file as a new artifact (raw body, or multipart with one `file` part)."""
        actor = _actor()
        scope = _scope(query, actor, query.get("owner_user_id"))
        upload = _upload()
        raw_path = query.get("path") or query.get("filename") or request.headers.get("X-Filename") or _filename()
        if not raw_path:
            raise InvalidInput("path or filename query parameter required")
        lineage = Lineage(job_id=query.get("job_id"), task_id=query.get("task_id"), run_id=query.get("run_id"))
        row = _service().create(actor, scope, clean_path(raw_path), upload, lineage)
        return view(row), 201, {"Location": f"/v1/artifacts/{row.id}"}

    @blp.operation(
        200, ArtifactListSchema, errors={400: "A bad filter", 403: "Not a partition of the caller"}, bearer="user"
    )
    @blp.arguments(ListQuerySchema, location="query")
    def get(self, query: dict[str, Any]) -> Any:
        """List one partition's artifacts, newest first."""
        actor = _actor()
        scope = _scope(query, actor, query.get("user_id") or query.get("owner_user_id"))
        limit = int_param(query["limit"], 50, 1, 200)
        offset = int_param(query["cursor"] or query["offset"], 0, 0, MAX_OFFSET)
        filters = ListFilters(query.get("correlation_task_id"), query.get("job_id"), limit + 1, offset)
        service = _service()
        with service.db.session() as session:
            if not may_list(session, actor, scope):
                raise NotPermitted("access denied")
            found = service.list(session, scope, filters)
            body: dict[str, Any] = {"artifacts": [view(row) for row in found[:limit]]}
        if len(found) > limit:
            body["next_offset"], body["next_cursor"] = offset + limit, str(offset + limit)
        return body


@blp.route("/<string:artifact_id>")
class ArtifactItem(MethodView):
    @blp.operation(
        200,
        errors={400: "Not an artifact id", 404: "No such artifact, or not one the caller may read", 416: "Bad range"},
        bearer="user",
    )
    @blp.doc(
        responses={
            "200": {
                "description": "The file",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
            "206": {"description": "One range of the file"},
            "304": {"description": "Unchanged (If-None-Match)"},
        }
    )
    def get(self, artifact_id: str) -> Response:
        """Download an artifact's content (streamed; `Range` and `If-None-Match` honoured)."""
        service = _service()
        row = service.get(_actor(), _artifact_id(artifact_id))
        etag = f'"{row.checksum_sha256}"'
        headers = {
            "ETag": etag,
            "Content-Disposition": _disposition(row.path),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Accept-Ranges": "bytes",
        }
        if request.headers.get("If-None-Match", "").strip() in (etag, "*"):
            return Response(status=304, headers=headers)
        start, end = _range(request.headers.get("Range"), row.size_bytes)
        content = service.content(row, start)
        status = 200 if (start, end) == (0, row.size_bytes) else 206
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{row.size_bytes}"
        headers["Content-Length"] = str(end - start)
        return Response(_limited(content, end - start), status=status, headers=headers, mimetype=row.content_type)

    @blp.operation(
        200,
        ArtifactSchema,
        errors={
            400: "Not an artifact id, or a bad job_id",
            403: "The caller may read it but not change it",
            404: "No such artifact, or not one the caller may read",
            413: "Larger than the upload limit, or past the owner's quota",
            503: "The blob store cannot be used now",
        },
        bearer="user",
    )
    @blp.arguments(ReplaceQuerySchema, location="query")
    @blp.doc(requestBody=_BODY)
    def put(self, query: dict[str, Any], artifact_id: str) -> Any:
        """Replace an artifact's content (the switch is atomic)."""
        row = _service().replace(_actor(), _artifact_id(artifact_id), _upload(), query.get("job_id"))
        return view(row)

    @blp.operation(
        204,
        errors={
            403: "The caller may read it but not delete it",
            404: "No such artifact, or not one the caller may read",
        },
        bearer="user",
    )
    def delete(self, artifact_id: str) -> Response:
        """Delete an artifact and its content."""
        _service().delete(_actor(), _artifact_id(artifact_id))
        return Response(status=204)


@blp.route("/<string:artifact_id>/metadata")
class ArtifactMetadata(MethodView):
    @blp.operation(
        200,
        ArtifactSchema,
        errors={400: "Not an artifact id", 404: "No such artifact, or not one the caller may read"},
        bearer="user",
    )
    def get(self, artifact_id: str) -> Any:
        """An artifact's metadata (path, size, type, checksum, lineage) without its content."""
        return view(_service().get(_actor(), _artifact_id(artifact_id)))


@blp.route("/<string:artifact_id>/grants")
class GrantCollection(MethodView):
    @blp.operation(200, GrantListSchema, errors={403: "Not the owner", 404: "No such artifact"}, bearer="user")
    def get(self, artifact_id: str) -> Any:
        """The users the owner let read this user-scoped artifact."""
        service = _service()
        with service.db.session() as session:
            grants = artifact_grants.listed(session, _actor(), _artifact_id(artifact_id))
            return {"grants": [{"user_id": g.grantee_user_id, "created_at": g.created_at} for g in grants]}


@blp.route("/<string:artifact_id>/grants/<string:user_id>")
class GrantItem(MethodView):
    @blp.operation(204, errors={403: "Not the owner", 404: "No such artifact or user"}, bearer="user")
    def put(self, artifact_id: str, user_id: str) -> Response:
        """Let a user read this user-scoped artifact (idempotent)."""
        with _service().db.session() as session:
            artifact_grants.grant(session, _actor(), _artifact_id(artifact_id), _user_id(user_id))
        return Response(status=204)

    @blp.operation(204, errors={403: "Not the owner", 404: "No such artifact"}, bearer="user")
    def delete(self, artifact_id: str, user_id: str) -> Response:
        """Take a user's read grant away (idempotent)."""
        with _service().db.session() as session:
            artifact_grants.revoke(session, _actor(), _artifact_id(artifact_id), _user_id(user_id))
        return Response(status=204)


def _user_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("User not found") from None


def _range(header: str | None, size: int) -> tuple[int, int]:
    """``[start, end)`` of a single ``bytes=`` range; the whole file without one; 416 for one that cannot be met."""
    if not header:
        return 0, size
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable(size)
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(size)
    return start, end


def _limited(pieces: Any, length: int) -> Any:
    left = length
    for piece in pieces:
        if left <= 0:
            break
        chunk = piece[:left]
        left -= len(chunk)
        yield chunk


def _disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1] or "artifact"
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
