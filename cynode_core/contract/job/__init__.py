"""The typed job contract: every shape a job takes, with one JSON codec each.

- :mod:`.statuses`: task, job and run statuses and their terminal sets;
- :mod:`.request`: the sandbox request (also the stored job payload) and
  the Worker API's ``RunJobRequest``, decoded and validated at the edge;
- :mod:`.result`: the node's ``RunJobResponse``, a dispatch failure, the
  cancel answer, and the stored result's client-facing text;
- :mod:`.report`: a node's report on a job it was handed with ``jobs:start``;
- :mod:`.sba`: the sandbox agent runner's job spec and result (standard
  library only: the runner imports it inside the sandbox; not re-exported).

Each type has ``to_json()`` (a dict in wire order) and ``from_json()``; the
hops between gateway, database, dispatcher, Worker API and runtime pass these
objects, and nothing else spells out their keys.
"""

from cynode_core.contract.job.report import (
    MAX_OUTPUT_BATCH,
    OUTPUT_CUT_MARKER,
    JobReport,
    OutputPiece,
    ReportState,
    report_time,
)
from cynode_core.contract.job.request import (
    WIRE_VERSION,
    McpGrant,
    ReportLease,
    RunJobRequest,
    SandboxRequest,
    UnusablePayload,
    is_uuid,
    payload_from_storage,
)
from cynode_core.contract.job.result import (
    BadResult,
    CancelResponse,
    DispatchFailure,
    JobResult,
    RunJobResponse,
    Truncation,
    format_time,
    result_from_storage,
    result_text,
    without_nul,
)
from cynode_core.contract.job.statuses import (
    JOB_TERMINAL,
    TASK_API_STATUSES,
    TASK_TERMINAL,
    JobStatus,
    RunStatus,
    TaskStatus,
    sql_list,
)

__all__ = [
    "JOB_TERMINAL",
    "TASK_API_STATUSES",
    "TASK_TERMINAL",
    "WIRE_VERSION",
    "BadResult",
    "CancelResponse",
    "DispatchFailure",
    "JobResult",
    "JobReport",
    "JobStatus",
    "McpGrant",
    "ReportLease",
    "ReportState",
    "RunJobRequest",
    "RunJobResponse",
    "RunStatus",
    "SandboxRequest",
    "TaskStatus",
    "Truncation",
    "UnusablePayload",
    "format_time",
    "MAX_OUTPUT_BATCH",
    "OUTPUT_CUT_MARKER",
    "OutputPiece",
    "report_time",
    "is_uuid",
    "payload_from_storage",
    "result_from_storage",
    "result_text",
    "sql_list",
    "without_nul",
]
