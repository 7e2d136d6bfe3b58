"""The sandbox agent runner's job spec and result (agents_contract.md 5.2, 5.7; docs/wire_contract.md#sba).

One definition for the orchestrator (builds and checks ``job_spec_json``),
the node (checks it again, reads ``result.json``) and the runner, which gets
this very file mounted next to it as ``sba_spec.py``
(``node_agent.sba.runner_files``): hence the standard library only, nothing
of cynode, and Python 3.9 syntax (no ``match``, no ``X | Y`` outside
annotations). Decoding follows upstream's Go decoder: an unknown field
anywhere or a wrong JSON type is refused, ``null`` reads as the zero value;
then upstream's ``ValidateJobSpec`` checks in its order and words
(``<field>: <reason>``), then ours. A result is decoded as strictly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = "1.0"
SUPPORTED_MAJOR = 1

AGENT_INFERENCE = "agent_inference"
DIRECT_STEPS = "direct_steps"
EXECUTION_MODES = (AGENT_INFERENCE, DIRECT_STEPS)

# constraints.max_steps: ours, optional; the runner's default when absent.
DEFAULT_MAX_STEPS = 8
MAX_STEPS_LIMIT = 50
# At most this many steps in a spec (the sba_steps bound of task create).
MAX_SPEC_STEPS = 50

# Result and step statuses.
SUCCESS = "success"
FAILURE = "failure"
TIMEOUT = "timeout"
RESULT_STATUSES = (SUCCESS, FAILURE, TIMEOUT)

# Failure codes: upstream's five, and ours ``inference_failed``.
SCHEMA_VALIDATION = "schema_validation"
STEP_FAILED = "step_failed"
TIMEOUT_CODE = "timeout"
CONSTRAINT_VIOLATION = "constraint_violation"
EXT_NET_REQUIRED = "ext_net_required"
INFERENCE_FAILED = "inference_failed"
FAILURE_CODES = (SCHEMA_VALIDATION, STEP_FAILED, TIMEOUT_CODE, CONSTRAINT_VIOLATION, EXT_NET_REQUIRED, INFERENCE_FAILED)

# Fixed texts (upstream's where it has them).
TIMEOUT_MESSAGE = "job exceeded max_runtime_seconds"
MAX_STEPS_MESSAGE = "max_steps ({}) reached without finish"
PATH_ESCAPES = "path escapes workspace"
TRUNCATED_MARKER = "\n...[truncated]"

# Local tools (5.5): upstream's six, which direct mode runs, then ours.
RUN_COMMAND = "run_command"
READ_FILE = "read_file"
WRITE_FILE = "write_file"
APPLY_UNIFIED_DIFF = "apply_unified_diff"
LIST_TREE = "list_tree"
SEARCH_FILES = "search_files"
TODO_ADD = "todo_add"
TODO_DONE = "todo_done"
FINISH = "finish"
DIRECT_TOOLS = (RUN_COMMAND, READ_FILE, WRITE_FILE, APPLY_UNIFIED_DIFF, LIST_TREE, SEARCH_FILES)
AGENT_TOOLS = DIRECT_TOOLS + (TODO_ADD, TODO_DONE, FINISH)


_CONSTRAINT_KEYS = ("max_runtime_seconds", "max_output_bytes", "ext_net_allowed", "max_steps")


class InvalidSpec(ValueError):
    """A job spec or result that breaks the contract; the message names the field and the reason."""


class _Object:
    """Typed reads of one JSON object at ``where``; unknown keys and wrong types raise :class:`InvalidSpec`."""

    def __init__(self, value: Any, where: str, known: tuple[str, ...]):
        if not isinstance(value, dict):
            raise InvalidSpec(f"{where or 'value'}: must be a JSON object")
        self.value, self.where = value, where
        unknown = sorted(key for key in value if key not in known)
        if unknown:
            raise InvalidSpec(f"{self.name(unknown[0])}: unknown field")

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, kind: Any, what: str) -> Any:
        value = self.value.get(key)
        # bool is an int in Python but not a JSON number.
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise InvalidSpec(f"{self.name(key)}: must be {what}")
        return value

    def text(self, key: str) -> str:
        return self._get(key, str, "a string") or ""

    def integer(self, key: str) -> int | None:
        value: int | None = self._get(key, int, "an integer")
        return value

    def flag(self, key: str) -> bool:
        return bool(self._get(key, bool, "a boolean"))

    def texts(self, key: str) -> tuple[str, ...]:
        items = self._get(key, list, "an array of strings") or []
        if not all(isinstance(item, str) for item in items):
            raise InvalidSpec(f"{self.name(key)}: must be an array of strings")
        return tuple(items)

    def mapping(self, key: str) -> dict[str, Any]:
        return dict(self._get(key, dict, "an object") or {})

    def objects(self, key: str) -> list[Any]:
        return list(self._get(key, list, "an array") or [])


@dataclass(frozen=True)
class Constraints:
    max_runtime_seconds: int
    max_output_bytes: int
    ext_net_allowed: bool = False
    max_steps: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in _CONSTRAINT_KEYS}
        if self.max_steps is None:
            del out["max_steps"]
        return out


@dataclass(frozen=True)
class StepSpec:
    """One step: a local tool and its arguments (the program in direct mode, a suggested to-do otherwise)."""

    type: str
    args: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "args": dict(self.args)}


@dataclass(frozen=True)
class InferenceSpec:
    allowed_models: tuple[str, ...] = ()
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"allowed_models": list(self.allowed_models), "source": self.source}


_CONTEXT_TEXTS: tuple[str, ...] = ("baseline_context", "project_context", "task_context", "persona_title")
_CONTEXT_TEXTS += ("persona_description", "additional_context")
_CONTEXT_LISTS = ("requirements", "acceptance_criteria", "skill_ids")


@dataclass(frozen=True)
class ContextSpec:
    """What the prompt is made of; ``skills`` is any JSON value (upstream's ``interface{}``)."""

    baseline_context: str = ""
    project_context: str = ""
    task_context: str = ""
    requirements: tuple[str, ...] = ()
    acceptance_criteria: tuple[str, ...] = ()
    persona_title: str = ""
    persona_description: str = ""
    preferences: dict[str, str] = field(default_factory=dict)
    additional_context: str = ""
    skill_ids: tuple[str, ...] = ()
    skills: Any = None

    @classmethod
    def from_json(cls, value: Any) -> ContextSpec:
        read = _Object(value, "context", _CONTEXT_TEXTS + _CONTEXT_LISTS + ("preferences", "skills"))
        preferences = read.mapping("preferences")
        if not all(isinstance(v, str) for v in preferences.values()):
            raise InvalidSpec("context.preferences: must be an object of strings")
        values: dict[str, Any] = {key: read.text(key) for key in _CONTEXT_TEXTS}
        values.update({key: read.texts(key) for key in _CONTEXT_LISTS})
        return cls(preferences=preferences, skills=read.value.get("skills"), **values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in _CONTEXT_TEXTS if getattr(self, key)}
        out.update({key: list(getattr(self, key)) for key in _CONTEXT_LISTS if getattr(self, key)})
        if self.preferences:
            out["preferences"] = dict(self.preferences)
        if self.skills is not None:
            out["skills"] = self.skills
        return out


@dataclass(frozen=True)
class JobSpec:
    """``job_spec_json`` (5.2): build it, or decode one with :meth:`from_json` / :meth:`from_text`."""

    job_id: str
    task_id: str
    constraints: Constraints
    protocol_version: str = PROTOCOL_VERSION
    execution_mode: str = ""
    steps: tuple[StepSpec, ...] = ()
    inference: InferenceSpec | None = None
    context: ContextSpec | None = None

    @property
    def mode(self) -> str:
        """The mode that runs: as given, else ``direct_steps`` when there are steps, else ``agent_inference``."""
        if self.execution_mode:
            return self.execution_mode
        return DIRECT_STEPS if self.steps else AGENT_INFERENCE

    @property
    def max_steps(self) -> int:
        return self.constraints.max_steps or DEFAULT_MAX_STEPS

    @property
    def model(self) -> str:
        """The model of the decide calls: the first allowed one ("" lets the node choose)."""
        return self.inference.allowed_models[0] if self.inference and self.inference.allowed_models else ""

    @classmethod
    def from_text(cls, text: str) -> JobSpec:
        """Decode ``job_spec_json`` text; :class:`InvalidSpec` says what is wrong."""
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:  # JSONDecodeError, and NaN/Infinity
            raise InvalidSpec(f"invalid JSON: {exc}") from None
        return cls.from_json(value)

    @classmethod
    def from_json(cls, value: Any) -> JobSpec:
        """Decode and validate a decoded job spec; :class:`InvalidSpec` (a ``ValueError``) on the first problem."""
        read = _Object(value, "", ("protocol_version", "job_id", "task_id", "execution_mode") + _SECTIONS)
        given = read.value.get("constraints")
        limits = _Object({} if given is None else given, "constraints", _CONSTRAINT_KEYS)
        constraints = Constraints(
            max_runtime_seconds=limits.integer("max_runtime_seconds") or 0,
            max_output_bytes=limits.integer("max_output_bytes") or 0,
            ext_net_allowed=limits.flag("ext_net_allowed"),
            max_steps=limits.integer("max_steps"),
        )
        steps = tuple(step_from_json(item, f"steps[{n}]") for n, item in enumerate(read.objects("steps")))
        inference = None
        if read.value.get("inference") is not None:
            section = _Object(read.value["inference"], "inference", ("allowed_models", "source"))
            inference = InferenceSpec(section.texts("allowed_models"), section.text("source"))
        given = read.value.get("context")
        context = None if given is None else ContextSpec.from_json(given)
        texts = {key: read.text(key) for key in ("protocol_version", "job_id", "task_id", "execution_mode")}
        spec = cls(constraints=constraints, steps=steps, inference=inference, context=context, **texts)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Upstream's ``ValidateJobSpec`` checks in its order, then ours; :class:`InvalidSpec` on the first."""
        if not self.protocol_version:
            raise InvalidSpec("protocol_version: required")
        major = self.protocol_version.strip().split(".", 1)[0].strip()
        if not major.isdigit() or not major.isascii():
            raise InvalidSpec("protocol_version: invalid version format")
        if int(major) != SUPPORTED_MAJOR:
            raise InvalidSpec(
                f"protocol_version: unsupported major version {int(major)} (supported: {SUPPORTED_MAJOR})"
            )
        if not self.job_id:
            raise InvalidSpec("job_id: required")
        if not self.task_id:
            raise InvalidSpec("task_id: required")
        if self.execution_mode and self.execution_mode not in EXECUTION_MODES:
            raise InvalidSpec("execution_mode: must be one of: " + ", ".join(EXECUTION_MODES))
        if self.constraints.max_runtime_seconds <= 0:
            raise InvalidSpec("constraints.max_runtime_seconds: must be positive")
        if self.constraints.max_output_bytes <= 0:
            raise InvalidSpec("constraints.max_output_bytes: must be positive")
        limit = self.constraints.max_steps
        if limit is not None and not 1 <= limit <= MAX_STEPS_LIMIT:
            raise InvalidSpec(f"constraints.max_steps: must be between 1 and {MAX_STEPS_LIMIT}")
        if len(self.steps) > MAX_SPEC_STEPS:
            raise InvalidSpec(f"steps: at most {MAX_SPEC_STEPS} steps")
        for n, step in enumerate(self.steps):
            if step.type not in DIRECT_TOOLS:
                raise InvalidSpec(f"steps[{n}].type: must be one of: " + ", ".join(DIRECT_TOOLS))
        if self.mode == DIRECT_STEPS and not self.steps:
            raise InvalidSpec("steps: required and must be non-empty for direct_steps")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: getattr(self, key) for key in ("protocol_version", "job_id", "task_id")}
        if self.execution_mode:
            out["execution_mode"] = self.execution_mode
        out["constraints"] = self.constraints.to_json()
        if self.steps:
            out["steps"] = [step.to_json() for step in self.steps]
        if self.inference is not None:
            out["inference"] = self.inference.to_json()
        if self.context is not None:
            out["context"] = self.context.to_json()
        return out

    def to_text(self) -> str:
        """``job_spec_json``: compact JSON text."""
        return json.dumps(self.to_json(), separators=(",", ":"))


_SECTIONS = ("constraints", "steps", "inference", "context")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def step_from_json(value: Any, where: str) -> StepSpec:
    """One ``{type, args}`` step at ``where``; :class:`InvalidSpec` on an unknown key or a wrong type."""
    read = _Object(value, where, ("type", "args"))
    return StepSpec(type=read.text("type"), args=read.mapping("args"))


# ------------------------------------------------------------------ the result


@dataclass(frozen=True)
class StepResult:
    """One executed step; ``exit_code`` for ``run_command`` only."""

    index: int
    type: str
    status: str
    exit_code: int | None = None
    output: str = ""
    error: str = ""

    @classmethod
    def from_json(cls, value: Any, where: str = "steps[]") -> StepResult:
        read = _Object(value, where, ("index", "type", "status", "exit_code", "output", "error"))
        status = read.text("status")
        if status not in RESULT_STATUSES:
            raise InvalidSpec(f"{where}.status: must be one of: " + ", ".join(RESULT_STATUSES))
        texts = {key: read.text(key) for key in ("type", "output", "error")}
        return cls(index=read.integer("index") or 0, status=status, exit_code=read.integer("exit_code"), **texts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "type": self.type, "status": self.status}
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        if self.output:
            out["output"] = self.output
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class TodoItem:
    title: str
    done: bool = False

    @classmethod
    def from_json(cls, value: Any, where: str = "todo[]") -> TodoItem:
        read = _Object(value, where, ("title", "done"))
        return cls(read.text("title"), read.flag("done"))

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "done": self.done}


@dataclass(frozen=True)
class SbaResult:
    """``/job/result.json`` (5.7), returned by the node as ``sba_result``; ``artifacts`` holds the paths."""

    job_id: str
    status: str
    steps: tuple[StepResult, ...] = ()
    artifacts: tuple[str, ...] = ()
    todo: tuple[TodoItem, ...] = ()
    final_answer: str | None = None
    inference_used: bool = False
    failure_code: str | None = None
    failure_message: str | None = None
    protocol_version: str = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise InvalidSpec("status: must be one of: " + ", ".join(RESULT_STATUSES))
        failed = self.status != SUCCESS
        if failed != (self.failure_code is not None) or failed != (self.failure_message is not None):
            raise InvalidSpec("failure_code and failure_message: present exactly when status is not success")
        if self.failure_code is not None and self.failure_code not in FAILURE_CODES:
            raise InvalidSpec("failure_code: must be one of: " + ", ".join(FAILURE_CODES))

    @classmethod
    def from_json(cls, value: Any) -> SbaResult:
        """Decode a result; :class:`InvalidSpec` on an unknown key, a wrong type or a broken rule."""
        keys = ("protocol_version", "job_id", "status", "final_answer", "inference_used", "steps", "artifacts")
        read = _Object(value, "", keys + ("todo", "failure_code", "failure_message"))
        for key in ("protocol_version", "job_id", "status", "steps", "artifacts"):
            if key not in read.value:
                raise InvalidSpec(f"{key}: required")
        artifacts = [_Object(item, f"artifacts[{n}]", ("path",)) for n, item in enumerate(read.objects("artifacts"))]
        optional = {key: read.text(key) if read.value.get(key) is not None else None for key in _OPTIONAL_TEXTS}
        return cls(
            protocol_version=read.text("protocol_version"),
            job_id=read.text("job_id"),
            status=read.text("status"),
            steps=tuple(StepResult.from_json(item, f"steps[{n}]") for n, item in enumerate(read.objects("steps"))),
            artifacts=tuple(item.text("path") for item in artifacts),
            todo=tuple(TodoItem.from_json(item, f"todo[{n}]") for n, item in enumerate(read.objects("todo"))),
            inference_used=read.flag("inference_used"),
            **optional,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_version": self.protocol_version, "job_id": self.job_id, "status": self.status}
        if self.final_answer is not None:
            out["final_answer"] = self.final_answer
        out["inference_used"] = self.inference_used
        out["steps"] = [step.to_json() for step in self.steps]
        out["artifacts"] = [{"path": path} for path in self.artifacts]
        out["todo"] = [item.to_json() for item in self.todo]
        if self.failure_code is not None:
            out["failure_code"] = self.failure_code
            out["failure_message"] = self.failure_message
        return out


_OPTIONAL_TEXTS = ("final_answer", "failure_code", "failure_message")
