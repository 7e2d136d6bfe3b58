"""``/v1/tasks*``: create, list, get, ready, result, logs, cancel (docs/wire_contract.md#tasks)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from marshmallow import fields, validate

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job import TASK_API_STATUSES
from cynode_core.logs import current_request_id
from cynode_core.orchestrator.api import Blueprint, task_logs
from cynode_core.orchestrator.api.schemas_common import (
    OmitEmptySchema,
    PageQuerySchema,
    RequestSchema,
    Timestamp,
    int_param,
)
from cynode_core.orchestrator.api.tokens import current_user
from cynode_core.orchestrator.models.tasks import PlanningState
from cynode_core.orchestrator.services import task_ready, tasks
from cynode_core.orchestrator.services.sba_payload import check_steps, read_steps
from cynode_core.orchestrator.services.task_views import result_view, task_view

log = logging.getLogger(__name__)

blp = Blueprint(
    "tasks", __name__, url_prefix="/v1/tasks", description="Tasks: create, read, list, ready, result, logs, cancel"
)

PLANNING_STATES = [s.value for s in PlanningState]
PLANNING_STATE_DOC = "`draft`: no job until `POST /v1/tasks/{id}/ready`; `ready`: its job is queued"


class CreateTaskSchema(RequestSchema):
    prompt = fields.String(load_default="", metadata={"example": "echo hello"})
    input_mode = fields.String(
        load_default="", metadata={"example": "commands", "description": "prompt (default), script or commands"}
    )
    use_inference = fields.Boolean(load_default=False)
    task_name = fields.String(load_default=None, allow_none=True)
    project_id = fields.String(load_default=None, allow_none=True)
    attachments = fields.List(fields.String(), load_default=list)
    use_sba = fields.Boolean(load_default=False)
    sba_steps = fields.Raw(
        load_default=None,
        metadata={"description": "with use_sba: the steps a sandbox agent runs in order, without a model"},
    )
    planning_state = fields.String(
        load_default=PlanningState.READY.value,
        validate=validate.OneOf(PLANNING_STATES),
        metadata={
            "example": "draft",
            "description": "`draft`: keep the task without a job until it is made ready; `ready` (default): start "
            "it at once (a draft all the same when `CYNODE_TASK_AUTO_READY` is off)",
        },
    )


class TaskSchema(OmitEmptySchema):
    id = fields.String(required=True)
    task_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(TASK_API_STATUSES)})
    planning_state = fields.String(required=True, metadata={"enum": PLANNING_STATES, "description": PLANNING_STATE_DOC})
    task_name = fields.String()
    prompt = fields.String()
    summary = fields.String()
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    attachments = fields.List(fields.String())
    project_id = fields.String(metadata={"description": "ours: the task's project (its outputs are artifacts there)"})


class TaskListSchema(OmitEmptySchema):
    tasks = fields.List(fields.Nested(TaskSchema), required=True)
    next_offset = fields.Integer()
    next_cursor = fields.String()


class ListQuerySchema(PageQuerySchema):
    status = fields.String(load_default=None, metadata={"enum": list(TASK_API_STATUSES)})


class JobResultSchema(OmitEmptySchema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    result = fields.String()
    started_at = Timestamp()
    ended_at = Timestamp()


class TaskResultSchema(ma.Schema):
    task_id = fields.String(required=True)
    status = fields.String(required=True)
    planning_state = fields.String(required=True, metadata={"enum": PLANNING_STATES, "description": PLANNING_STATE_DOC})
    jobs = fields.List(fields.Nested(JobResultSchema), required=True)


class LogsQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    stream = fields.String(load_default="", metadata={"enum": ["stdout", "stderr", "all"]})


class LogsSchema(ma.Schema):
    task_id = fields.String(required=True)
    stdout = fields.String(required=True)
    stderr = fields.String(required=True)


class CancelSchema(ma.Schema):
    task_id = fields.String(required=True)
    canceled = fields.Boolean(required=True)


def _state():  # type: ignore[no-untyped-def]
    return current_app.extensions["cynode"]


@blp.route("")
class Tasks(MethodView):
    @blp.operation(
        201,
        TaskSchema,
        errors={
            400: "Malformed body, no prompt, bad project_id or planning_state",
            413: "Body over the size limit",
            429: "Too many of the caller's jobs queued (CYNODE_MAX_QUEUED_PER_USER); see Retry-After",
        },
        bearer="user",
    )
    @blp.arguments(CreateTaskSchema)
    def post(self, body: dict[str, Any]) -> Any:
        """Create a task; it is queued at once and dispatched in the background, unless it is a draft.

        A draft (`planning_state` `draft`, or every task when `CYNODE_TASK_AUTO_READY` is off) has no job until
        `POST /v1/tasks/{id}/ready`.
        """
        if not body["prompt"]:
            raise InvalidInput("Prompt is required")
        steps = check_steps(read_steps(body["sba_steps"]))
        if steps and not body["use_sba"]:
            raise InvalidInput("sba_steps requires use_sba")
        mode = body["input_mode"] if body["input_mode"].strip() else "prompt"
        new = tasks.NewTask(
            prompt=body["prompt"],
            input_mode=mode,
            use_inference=body["use_inference"] or mode == "prompt",
            task_name=body["task_name"],
            project_id=body["project_id"],
            attachments=body["attachments"],
            request_id=current_request_id(),
            draft=body["planning_state"] == PlanningState.DRAFT,
            use_sba=body["use_sba"],
            sba_steps=tuple(step.to_json() for step in steps),
        )
        state = _state()
        with state.db.session() as session:
            created = tasks.create_task(session, state.settings, current_user().id, new)
            session.flush()
            session.refresh(created.task)
            log.info(
                "task %s created (%s, %s)",
                created.task.id,
                mode,
                created.task.planning_state,
                extra={"task_id": str(created.task.id)},
            )
            return task_view(created), 201

    @blp.operation(200, TaskListSchema, errors={400: "Bad paging parameter or unknown status"}, bearer="user")
    @blp.arguments(ListQuerySchema, location="query")
    def get(self, query: dict[str, Any]) -> Any:
        """My tasks, newest first, optionally of one status."""
        limit = int_param(query["limit"], 50, 1, 200)
        cursor = (query["cursor"] or "").strip()
        offset = int_param(cursor, 0, 0, 2**31 - 1) if cursor else int_param(query["offset"], 0, 0, 2**31 - 1)
        status = query["status"]
        if status is not None and status not in TASK_API_STATUSES:
            raise InvalidInput("Invalid status filter; allowed values: " + ", ".join(TASK_API_STATUSES))
        with _state().db.session() as session:
            found, next_offset = tasks.list_tasks(session, current_user().id, limit=limit, offset=offset, status=status)
            body: dict[str, Any] = {"tasks": [task_view(f) for f in found]}
        if next_offset is not None:
            body.update(next_offset=next_offset, next_cursor=str(next_offset))
        return body


def one_task_route(schema: type[ma.Schema]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """What every ``/v1/tasks/{ref}...`` view shares: a user's token, 200 with ``schema``, 404."""
    return blp.operation(200, schema, errors={404: "No such task (or not yours)"}, bearer="user")


def _task(session, ref: str):  # type: ignore[no-untyped-def]
    user = current_user()
    return tasks.find_task(session, user.id, user.is_admin, ref)


@blp.route("/<string:ref>")
class TaskItem(MethodView):
    @one_task_route(TaskSchema)
    def get(self, ref: str) -> Any:
        """One task, by id or by name."""
        with _state().db.read() as session:  # the task, then its input attachments (made with it)
            return task_view(tasks.with_attachments(session, _task(session, ref)))


@blp.route("/<string:ref>/ready")
class TaskReady(MethodView):
    @blp.operation(
        200,
        TaskSchema,
        errors={
            404: "No such task (or not yours)",
            409: "The draft ended (`task is not in a runnable state`) or already has jobs (`task already has jobs`)",
            429: "Too many of the caller's jobs queued (CYNODE_MAX_QUEUED_PER_USER); see Retry-After",
        },
        bearer="user",
    )
    def post(self, ref: str) -> Any:
        """Make a draft task ready: its job is queued as a create's would have been.

        A task already ready is answered as it is, with no new job. Any body is ignored.
        """
        state = _state()
        with state.db.session() as session:
            task = task_ready.ready_task(session, state.settings, _task(session, ref))
            return task_view(tasks.with_attachments(session, task))


@blp.route("/<string:ref>/result")
class TaskResult(MethodView):
    @one_task_route(TaskResultSchema)
    def get(self, ref: str) -> Any:
        """The task's status and each job's stored result (a JSON string)."""
        with _state().db.session() as session:
            return result_view(session, _task(session, ref))


@blp.route("/<string:ref>/logs")
class TaskLogs(MethodView):
    @one_task_route(LogsSchema)
    @blp.arguments(LogsQuerySchema, location="query")
    def get(self, query: dict[str, Any], ref: str) -> Any:
        """Captured stdout and stderr of the task's jobs."""
        stream = query["stream"] or "all"
        with _state().db.session() as session:
            task = _task(session, ref)
            # follow=true: server-sent events as lines come (api/task_logs.py; not in the OpenAPI document).
            if task_logs.follow_requested():
                return task_logs.follow_response(task.id, stream)
            out, err = tasks.logs(tasks.jobs_of(session, task.id), stream)
            return {"task_id": str(task.id), "stdout": out, "stderr": err}


@blp.route("/<string:ref>/cancel")
class TaskCancel(MethodView):
    @one_task_route(CancelSchema)
    def post(self, ref: str) -> Any:
        """Cancel the task; a running job's container is stopped on its node."""
        state = _state()
        with state.db.session() as session:
            task = _task(session, ref)
            session.expunge(task)
        # The node hears of the cancel under the id the task was created with.
        tasks.cancel_task(state, task, task.request_id or current_request_id())
        return {"task_id": str(task.id), "canceled": True}
